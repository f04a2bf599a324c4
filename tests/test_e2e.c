/*  test_e2e.c - end to end: the real drover binaries, started as processes
    on loopback ports, driven through their command lines.

    The binary comes from $DROVER (set by tests/meson.build). Every process a
    test starts dies with the test (PR_SET_PDEATHSIG) and is killed in the
    test's teardown, so a failing test leaves nothing behind.
*/
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <czmq.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

//  --------------------------------------------------------------------------
//  Processes

#define MAX_SPAWNED 16
static pid_t s_spawned[MAX_SPAWNED];
static size_t s_spawned_count;
static char s_dir[64];

static const char *
s_drover (void)
{
    const char *path = getenv ("DROVER");
    cr_assert_not_null (path, "run through meson test: $DROVER is not set");
    return path;
}

//  Starts sh -c COMMAND in the background (its own process group).
static pid_t
s_spawn (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *command = zsys_vprintf (format, args);
    va_end (args);
    pid_t pid = fork ();
    cr_assert (pid >= 0);
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        setpgid (0, 0);
        execl ("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit (127);
    }
    free (command);
    cr_assert (s_spawned_count < MAX_SPAWNED);
    s_spawned[s_spawned_count++] = pid;
    return pid;
}

//  Drops a reaped process from the teardown list.
static void
s_forget (pid_t pid)
{
    for (size_t i = 0; i < s_spawned_count; i++)
        if (s_spawned[i] == pid)
            s_spawned[i] = s_spawned[--s_spawned_count];
}

//  Waits for pid up to timeout_ms; returns its exit status, 128 + signal,
//  or -1 on timeout (then it is killed).
static int
s_wait (pid_t pid, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    int delay_us = 1000;
    while (true) {
        int status;
        pid_t done = waitpid (pid, &status, WNOHANG);
        if (done == pid) {
            s_forget (pid);
            return WIFEXITED (status) ? WEXITSTATUS (status)
                                      : 128 + WTERMSIG (status);
        }
        if (zclock_mono () > deadline) {
            kill (-pid, SIGKILL);
            waitpid (pid, &status, 0);
            s_forget (pid);
            return -1;
        }
        usleep (delay_us); //  polling a child's exit, with a deadline
        delay_us = delay_us < 50000 ? delay_us * 2 : delay_us;
    }
}

//  Runs sh -c COMMAND in the foreground; returns as s_wait.
static int
s_run (int timeout_ms, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *command = zsys_vprintf (format, args);
    va_end (args);
    pid_t pid = s_spawn ("%s", command);
    free (command);
    return s_wait (pid, timeout_ms);
}

static void
s_setup (void)
{
    strcpy (s_dir, "/tmp/drover-e2e-XXXXXX");
    cr_assert_not_null (mkdtemp (s_dir));
    s_spawned_count = 0;
    zsys_handler_set (NULL);
}

static void
s_teardown (void)
{
    for (size_t i = 0; i < s_spawned_count; i++) {
        kill (-s_spawned[i], SIGKILL);
        waitpid (s_spawned[i], NULL, 0);
    }
    char *command = zsys_sprintf ("rm -rf %s", s_dir);
    if (system (command) != 0)
        fprintf (stderr, "cannot remove %s\n", s_dir);
    free (command);
}

//  A loopback port nobody listens on now.
static int
s_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    cr_assert_eq (bind (fd, (struct sockaddr *)&address, sizeof address), 0);
    socklen_t size = sizeof address;
    getsockname (fd, (struct sockaddr *)&address, &size);
    close (fd);
    return ntohs (address.sin_port);
}

//  Path of a file in the test's directory (static buffer per call site).
static char *
s_path (const char *name)
{
    return zsys_sprintf ("%s/%s", s_dir, name);
}

static char *
s_read (const char *path, size_t *size)
{
    FILE *file = fopen (path, "rb");
    cr_assert_not_null (file, "cannot open %s", path);
    fseek (file, 0, SEEK_END);
    long length = ftell (file);
    fseek (file, 0, SEEK_SET);
    char *data = (char *)malloc ((size_t)length + 1);
    cr_assert_eq (fread (data, 1, (size_t)length, file), (size_t)length);
    data[length] = 0;
    fclose (file);
    if (size)
        *size = (size_t)length;
    return data;
}

static void
s_write_lines (const char *path, size_t count, const char *format)
{
    FILE *file = fopen (path, "w");
    cr_assert_not_null (file);
    for (size_t i = 0; i < count; i++) {
        fprintf (file, format, i);
        fputc ('\n', file);
    }
    fclose (file);
}

//  Starts a broker on a free port; returns its endpoint (caller frees).
static char *
s_start_broker (void)
{
    int port = s_free_port ();
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    s_spawn ("exec %s broker --listen %s --sink-listen tcp://127.0.0.1:%d "
             "--heartbeat-ms 200 > %s/broker.log 2>&1",
             s_drover (), endpoint, s_free_port (), s_dir);
    return endpoint;
}

static void
s_start_worker (const char *endpoint, int children, const char *extra)
{
    s_spawn ("exec %s worker --connect %s -j %d %s >> %s/worker.log 2>&1",
             s_drover (), endpoint, children, extra ? extra : "", s_dir);
}

TestSuite (e2e, .init = s_setup, .fini = s_teardown, .timeout = 180);

//  --------------------------------------------------------------------------

Test (e2e, map_ordered_echo_over_two_nodes_returns_the_input)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2, NULL);
    s_start_worker (endpoint, 2, NULL);
    char *input = s_path ("input"), *output = s_path ("output");
    s_write_lines (input, 20000, "line %zu of the input");
    int64_t start = zclock_mono ();
    int rc = s_run (120000, "%s map --connect %s --ordered echo < %s > %s",
                    s_drover (), endpoint, input, output);
    int64_t elapsed = zclock_mono () - start;
    cr_assert_eq (rc, 0, "drover map exited %d", rc);
    char *expected = s_read (input, NULL), *got = s_read (output, NULL);
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
    char *input = s_path ("input"), *output = s_path ("output");
    s_write_lines (input, 20000, "local %zu");
    int64_t start = zclock_mono ();
    int rc =
        s_run (120000, "DROVER_CONNECT= %s map -j 2 --ordered echo < %s > %s",
               s_drover (), input, output);
    int64_t elapsed = zclock_mono () - start;
    cr_assert_eq (rc, 0, "drover map -j 2 exited %d", rc);
    char *expected = s_read (input, NULL), *got = s_read (output, NULL);
    cr_assert (strcmp (expected, got) == 0, "output differs from input");
    fprintf (stderr,
             "e2e: 20000 echo tasks in local mode, 2 children: "
             "%lld ms, %.0f tasks/s\n",
             (long long)elapsed, 20000.0 * 1000 / (double)elapsed);
    //  No broker or worker of that map is left
    rc = s_run (10000, "! pgrep -f '%s (broker|worker)' >/dev/null",
                s_drover ());
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
    char *input = s_path ("input"), *output = s_path ("output");
    s_write_lines (input, 300, "payload number %zu");
    int rc = s_run (60000, "%s map --connect %s --ordered sha256 < %s > %s",
                    s_drover (), endpoint, input, output);
    cr_assert_eq (rc, 0);
    char *got = s_read (output, NULL);
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
    char *input = s_path ("input"), *output = s_path ("output"),
         *errors = s_path ("errors");
    FILE *file = fopen (input, "w");
    fprintf (file, "hello\nworld\n");
    fclose (file);
    int rc = s_run (60000, "%s map --connect %s --ordered upper < %s > %s",
                    s_drover (), endpoint, input, output);
    cr_assert_eq (rc, 0);
    char *got = s_read (output, NULL);
    cr_assert_str_eq (got, "HELLO\nWORLD\n");
    free (got);

    file = fopen (input, "w");
    fprintf (file, "good\nbad\nfine\n");
    fclose (file);
    rc = s_run (60000,
                "%s map --connect %s --ordered --json picky < %s > %s 2> %s",
                s_drover (), endpoint, input, output, errors);
    cr_assert_neq (rc, 0, "a failed task makes map exit non-zero");
    got = s_read (output, NULL);
    char *stderr_text = s_read (errors, NULL);
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
    char *input = s_path ("input"), *output = s_path ("output"),
         *errors = s_path ("errors");
    FILE *file = fopen (input, "w");
    for (int i = 0; i < 50; i++)
        fprintf (file, "%s %d\n",
                 i == 10   ? "fail"
                 : i == 20 ? "crash"
                           : "ok",
                 i);
    fclose (file);
    int rc =
        s_run (60000, "%s map --connect %s --ordered mixed < %s > %s 2> %s",
               s_drover (), endpoint, input, output, errors);
    cr_assert_neq (rc, 0, "failures make map exit non-zero");
    char *stderr_text = s_read (errors, NULL);
    cr_assert (strstr (stderr_text, "input 10"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "failing fail 10"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "input 20"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "CRASHED"), "%s", stderr_text);
    free (stderr_text);
    char *got = s_read (output, NULL);
    for (int i = 0; i < 50; i++) {
        char line[32];
        snprintf (line, sizeof line, "ok %d\n", i);
        if (i != 10 && i != 20)
            cr_assert (strstr (got, line), "missing %s", line);
    }
    free (got);

    //  The built-in fail and crash handlers too: every input reported
    s_write_lines (input, 5, "item %zu");
    rc = s_run (60000, "%s map --connect %s fail < %s > %s 2> %s", s_drover (),
                endpoint, input, output, errors);
    cr_assert_neq (rc, 0);
    stderr_text = s_read (errors, NULL);
    cr_assert (strstr (stderr_text, "input 4"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "item 4"), "the message: %s", stderr_text);
    free (stderr_text);
    size_t printed;
    free (s_read (output, &printed));
    cr_assert_eq (printed, 0, "failures print nothing in completion order");
    rc = s_run (60000, "%s map --connect %s crash < %s > %s 2> %s", s_drover (),
                endpoint, input, output, errors);
    cr_assert_neq (rc, 0);
    stderr_text = s_read (errors, NULL);
    cr_assert (strstr (stderr_text, "input 0"), "%s", stderr_text);
    cr_assert (strstr (stderr_text, "CRASHED"), "%s", stderr_text);
    free (stderr_text);

    //  The node survived all of that and still serves
    rc = s_run (60000, "%s map --connect %s --ordered echo < %s > %s",
                s_drover (), endpoint, input, output);
    cr_assert_eq (rc, 0);
    char *expected = s_read (input, NULL);
    got = s_read (output, NULL);
    cr_assert_str_eq (got, expected);
    free (expected);
    free (got);
    free (input);
    free (output);
    free (errors);
    free (endpoint);
}

Test (e2e, a_slow_task_does_not_delay_what_an_idle_child_can_run)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2, NULL);
    char *output = s_path ("output");
    //  One 4 s task first, then 20 quick ones; completion order output
    int64_t start = zclock_mono ();
    pid_t map = s_spawn ("(echo 4000; for i in $(seq 20); do echo 1; done) | "
                         "%s map --connect %s --json sleep > %s",
                         s_drover (), endpoint, output);
    //  The 20 quick tasks finish on the idle child long before the slow one
    int64_t deadline = start + 3500;
    size_t lines = 0;
    while (lines < 20 && zclock_mono () < deadline) {
        struct stat info;
        if (stat (output, &info) == 0 && info.st_size > 0) {
            char *text = s_read (output, NULL);
            lines = 0;
            for (char *p = text; (p = strchr (p, '\n')); p++)
                lines++;
            free (text);
        }
        if (lines < 20)
            usleep (20000); //  polling a file with a deadline
    }
    cr_assert_eq (lines, 20, "only %zu quick tasks done after 3.5 s", lines);
    cr_assert_eq (s_wait (map, 20000), 0);
    char *text = s_read (output, NULL);
    char *last = strrchr (text, '{');
    cr_assert (strstr (last, "4000"), "the slow task finished last: %s", last);
    free (text);
    free (output);
    free (endpoint);
}

Test (e2e, a_node_started_before_the_broker_connects_when_it_comes_up)
{
    int port = s_free_port ();
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    s_start_worker (endpoint, 1, NULL);
    //  Let the node try for a while with nobody there
    pid_t probe = s_spawn ("sleep 1");
    s_wait (probe, 5000);
    s_spawn ("exec %s broker --listen %s --sink-listen tcp://127.0.0.1:%d "
             "> %s/broker.log 2>&1",
             s_drover (), endpoint, s_free_port (), s_dir);
    char *input = s_path ("input"), *output = s_path ("output");
    s_write_lines (input, 10, "late %zu");
    int rc = s_run (30000, "%s map --connect %s --ordered echo < %s > %s",
                    s_drover (), endpoint, input, output);
    cr_assert_eq (rc, 0);
    char *expected = s_read (input, NULL), *got = s_read (output, NULL);
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
    char *input = s_path ("big"), *output = s_path ("output"),
         *id_file = s_path ("id");
    FILE *file = fopen (input, "wb");
    for (size_t i = 0; i < (1u << 20); i++)
        fputc ("abcdefghijklmnopqrstuvwxyz0123456789"[i * 7919 % 36], file);
    fclose (file);
    int rc = s_run (30000, "%s submit --connect %s echo - < %s > %s",
                    s_drover (), endpoint, input, id_file);
    cr_assert_eq (rc, 0);
    char *id = s_read (id_file, NULL);
    *strchrnul (id, '\n') = 0;
    cr_assert (strlen (id) > 0);
    rc = s_run (30000, "%s result --connect %s --timeout 20 %s > %s",
                s_drover (), endpoint, id, output);
    cr_assert_eq (rc, 0);
    size_t sent_size, got_size;
    char *sent = s_read (input, &sent_size), *got = s_read (output, &got_size);
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
        "submit",                    //  missing handler
        "wait",                      //  missing ids
        "status notanumber",         //  bad id
    };
    char *errors = s_path ("errors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = s_run (10000, "%s %s < /dev/null > /dev/null 2> %s",
                        s_drover (), cases[i], errors);
        cr_assert_eq (rc, 2, "'drover %s' exited %d", cases[i], rc);
        char *text = s_read (errors, NULL);
        char *newline = strchr (text, '\n');
        cr_assert (newline && newline[1] == 0,
                   "'drover %s': one line expected, got: %s", cases[i], text);
        free (text);
    }
    const char *commands[] = {"broker", "sink",   "worker", "map",    "submit",
                              "wait",   "result", "status", "cancel", "stats"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        int rc = s_run (10000, "%s %s --help | grep -q usage", s_drover (),
                        commands[i]);
        cr_assert_eq (rc, 0, "'drover %s --help'", commands[i]);
    }
    free (errors);
}

//  Counts the processes of local clusters (broker and worker on ipc).
static int
s_local_processes (void)
{
    char *command = zsys_sprintf (
        "pgrep -f '%s (broker|worker) .*ipc://' | wc -l", s_drover ());
    FILE *pipe = popen (command, "r");
    free (command);
    int count = -1;
    cr_assert (fscanf (pipe, "%d", &count) == 1);
    pclose (pipe);
    return count;
}

Test (e2e, ctrl_c_tears_the_local_cluster_down)
{
    char *input = s_path ("input");
    s_write_lines (input, 4, "3000");
    pid_t map =
        s_spawn ("DROVER_CONNECT= exec %s map -j 2 sleep < %s > /dev/null",
                 s_drover (), input);
    //  Wait until the cluster runs, then press Ctrl-C
    int64_t deadline = zclock_mono () + 10000;
    while (s_local_processes () < 2 && zclock_mono () < deadline)
        usleep (20000); //  polling for processes, with a deadline
    cr_assert_geq (s_local_processes (), 2, "the local cluster never started");
    kill (map, SIGINT);
    int rc = s_wait (map, 10000);
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
    char *path = s_path ("command.out");
    int rc = s_run (30000, "%s > %s", command, path);
    cr_assert_eq (rc, 0, "'%s' exited %d", command, rc);
    char *text = s_read (path, NULL);
    free (path);
    free (command);
    return text;
}

Test (e2e, dead_letters_keep_their_history_and_can_be_retried)
{
    char *endpoint = s_start_broker ();
    s_start_worker (endpoint, 2, NULL);
    char *input = s_path ("input"), *output = s_path ("output");
    s_write_lines (input, 2, "doomed %zu");
    int rc = s_run (30000,
                    "%s map --connect %s --retries 1 --retry-delay-ms 20 fail "
                    "< %s > %s 2>/dev/null",
                    s_drover (), endpoint, input, output);
    cr_assert_eq (rc, 1);
    char *list =
        s_output ("%s dead list --connect %s --json", s_drover (), endpoint);
    //  Two dead letters, each with both attempts and the handler's message
    cr_assert (strstr (list, "\"error\":\"doomed 0\""), "%s", list);
    cr_assert (strstr (list, "\"error\":\"doomed 1\""), "%s", list);
    size_t attempts = 0;
    for (char *p = list; (p = strstr (p, "\"attempt\":")); p++)
        attempts++;
    cr_assert_eq (attempts, 4, "2 tasks x 2 attempts: %s", list);
    free (list);
    char *ids =
        s_output ("%s dead retry --connect %s --all", s_drover (), endpoint);
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
    char *pid_file = s_path ("pid");
    char *id = s_output ("echo %s | %s submit --connect %s hang -", pid_file,
                         s_drover (), endpoint);
    *strchrnul (id, '\n') = 0;
    //  Wait for the task to run: its child wrote its pid
    int64_t deadline = zclock_mono () + 10000;
    struct stat info;
    while ((stat (pid_file, &info) || info.st_size == 0)
           && zclock_mono () < deadline)
        usleep (10000); //  polling a file, with a deadline
    char *text = s_read (pid_file, NULL);
    pid_t child = (pid_t)atoi (text);
    free (text);
    cr_assert_gt (child, 0);
    int64_t start = zclock_mono ();
    char *state =
        s_output ("%s cancel --connect %s %s", s_drover (), endpoint, id);
    free (state);
    //  The child's process group is stopped (SIGTERM kills sleep at once)
    deadline = zclock_mono () + 5000;
    while (kill (-child, 0) == 0 && zclock_mono () < deadline)
        usleep (10000); //  polling for the process group, with a deadline
    cr_assert_neq (kill (-child, 0), 0, "the cancelled task still runs");
    int64_t took = zclock_mono () - start;
    int rc = s_run (10000, "%s wait --connect %s --timeout 5 %s 2> %s",
                    s_drover (), endpoint, id, pid_file);
    cr_assert_eq (rc, 1, "a cancelled task is not a success");
    text = s_read (pid_file, NULL);
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
    int port = s_free_port ();
    char *endpoint = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    pid_t broker = s_spawn ("exec %s broker --no-sink --listen %s > %s/b.log "
                            "2>&1",
                            s_drover (), endpoint, s_dir);
    pid_t sink = s_spawn ("exec %s sink --listen tcp://127.0.0.1:%d --broker "
                          "%s > %s/s.log 2>&1",
                          s_drover (), s_free_port (), endpoint, s_dir);
    //  Both serve: a map through them completes
    s_start_worker (endpoint, 1, NULL);
    char *input = s_path ("input"), *output = s_path ("output");
    s_write_lines (input, 5, "x %zu");
    cr_assert_eq (s_run (30000, "%s map --connect %s echo < %s > %s",
                         s_drover (), endpoint, input, output),
                  0);
    kill (sink, SIGTERM);
    kill (broker, SIGTERM);
    cr_assert_eq (s_wait (sink, 5000), 0, "the sink's exit on SIGTERM");
    cr_assert_eq (s_wait (broker, 5000), 0, "the broker's exit on SIGTERM");
    free (input);
    free (output);
    free (endpoint);
}
