/*  cmd_client.c - the client subcommands: `drover map`, `submit`, `wait`,
    `result`, `status`, `cancel`, `stats` and `dead`. Thin: options, then
    libdrover's client (client/drover_client.h, drover_map.h) does the
    work; a local cluster (local_cluster.h) when `map` has no
    broker to connect to.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "commands.h"
#include "drover_client.h"
#include "drover_job.h"
#include "drover_json.h"
#include "drover_map.h"
#include "drover_msg.h"
#include "interrupt.h"
#include "local_cluster.h"
#include "options.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_BROKER   "tcp://127.0.0.1:5555"
#define READER_START     (64 * 1024) //  first size of the input buffer
#define MAP_TICK_MS      250         //  progress and health checks
#define CLUSTER_READY_MS 10000       //  wait for a local cluster to listen
#define CANCEL_MS        2000        //  wait for a cancel on Ctrl-C
#define STUCK_MS         3000        //  no result this long: ask why

#define OPTION_CONNECT(target, fallback)                                       \
    {                                                                          \
        "connect", 'c', CLI_STRING, "DROVER_CONNECT", fallback, 0, 0, "EP",    \
            "the broker's endpoint", target                                    \
    }
#define OPTION_CONNECT_TIMEOUT(target)                                         \
    {                                                                          \
        "connect-timeout", 0, CLI_INT, "DROVER_CONNECT_TIMEOUT", "5000", 1,    \
            INT_MAX, "MS", "how long to wait for the broker to answer", target \
    }

//  The flags of task options, shared by map and submit.
typedef struct {
    const char *queue;       //  --queue, or NULL
    long timeout_ms;         //  --timeout-ms
    long soft_timeout_ms;    //  --soft-timeout-ms
    long retries;            //  --retries; -1: the broker's default
    long retry_delay_ms;     //  --retry-delay-ms
    long retry_max_delay_ms; //  --retry-max-delay-ms
    const char *retry_on;    //  --retry-on, as given, or NULL
} s_task_flags_t;

#define OPTION_TASK_LIMITS(flags)                                              \
    {"timeout-ms",                                                             \
     't',                                                                      \
     CLI_INT,                                                                  \
     "DROVER_TIMEOUT_MS",                                                      \
     NULL,                                                                     \
     0,                                                                        \
     LONG_MAX,                                                                 \
     "MS",                                                                     \
     "hard time limit of one attempt (SIGKILL); 0: none",                      \
     &(flags).timeout_ms},                                                     \
        {"soft-timeout-ms",                                                    \
         0,                                                                    \
         CLI_INT,                                                              \
         "DROVER_SOFT_TIMEOUT_MS",                                             \
         NULL,                                                                 \
         0,                                                                    \
         LONG_MAX,                                                             \
         "MS",                                                                 \
         "soft time limit of one attempt (SIGTERM; SIGKILL follows at "        \
         "--timeout-ms or after the node's grace period); 0: none",            \
         &(flags).soft_timeout_ms},                                            \
        {"retries",                                                            \
         'r',                                                                  \
         CLI_INT,                                                              \
         "DROVER_RETRIES",                                                     \
         NULL,                                                                 \
         0,                                                                    \
         1000,                                                                 \
         "N",                                                                  \
         "attempts after the first for a failing task [default: the "          \
         "broker's, 0]",                                                       \
         &(flags).retries},                                                    \
        {"retry-delay-ms",                                                     \
         0,                                                                    \
         CLI_INT,                                                              \
         "DROVER_RETRY_DELAY_MS",                                              \
         NULL,                                                                 \
         0,                                                                    \
         LONG_MAX,                                                             \
         "MS",                                                                 \
         "wait before the first retry, doubled for each further one, with "    \
         "jitter [default: the broker's, 1000]",                               \
         &(flags).retry_delay_ms},                                             \
        {"retry-max-delay-ms",                                                 \
         0,                                                                    \
         CLI_INT,                                                              \
         "DROVER_RETRY_MAX_DELAY_MS",                                          \
         NULL,                                                                 \
         0,                                                                    \
         LONG_MAX,                                                             \
         "MS",                                                                 \
         "longest wait between retries [default: the broker's, 60000]",        \
         &(flags).retry_max_delay_ms},                                         \
    {                                                                          \
        "retry-on", 0, CLI_STRING, "DROVER_RETRY_ON", NULL, 0, 0, "CODES",     \
            "failures that retry, comma-separated: failed, crashed, "          \
            "timelimit, memlimit, lost, handler... or DROVER_E* names "        \
            "[default: failed,crashed,timelimit,memlimit]",                    \
            &(flags).retry_on                                                  \
    }

//  --------------------------------------------------------------------------
//  Signals (interrupt.h)

//  True when a result already ends with a newline, as command output does.
static bool
s_ends_line (const void *payload, size_t size)
{
    return size > 0 && ((const char *)payload)[size - 1] == '\n';
}

static int
s_exit_status_of_signal (void)
{
    return 128 + (int)cli_interrupted;
}

//  --------------------------------------------------------------------------
//  Shared helpers

//  Prints text on one line: line breaks as \n, other control characters
//  as ?, trailing white space dropped.
static void
s_print_line (FILE *out, const char *text)
{
    size_t size = strlen (text);
    while (size
           && (text[size - 1] == '\n' || text[size - 1] == '\r'
               || text[size - 1] == ' ' || text[size - 1] == '\t'))
        size--;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '\n')
            fputs ("\\n", out);
        else if (c < 0x20 && c != '\t')
            fputc ('?', out);
        else
            fputc (c, out);
    }
}

//  True for a valid handler or queue name: 1-255 printable ASCII
//  characters, no space (SPEC.md 4).
static bool
s_name_ok (const char *name)
{
    size_t size = strlen (name);
    if (size == 0 || size > 255)
        return false;
    for (size_t i = 0; i < size; i++)
        if (name[i] <= ' ' || name[i] > '~')
            return false;
    return true;
}

//  Connects a client to the local cluster, or without one to the broker at
//  endpoint; on failure prints why and returns NULL.
static drover_client_t *
s_connect_to (const char *command, const char *endpoint, local_cluster_t *local,
              long timeout_ms)
{
    drover_client_t *client = drover_client_new ();
    if (!client) {
        fprintf (stderr, "drover %s: out of memory\n", command);
        return NULL;
    }
    if (local ? local_cluster_connect (local, client, (int)timeout_ms)
              : drover_client_connect (client, endpoint, (int)timeout_ms)) {
        if (cli_interrupted) {
            drover_client_destroy (&client);
            return NULL;
        }
        fprintf (stderr, "drover %s: ", command);
        s_print_line (stderr, drover_client_reason (client));
        fputc ('\n', stderr);
        drover_client_destroy (&client);
    }
    return client;
}

static drover_client_t *
s_connect (const char *command, const char *endpoint, long timeout_ms)
{
    return s_connect_to (command, endpoint, NULL, timeout_ms);
}

//  Turns the task flags into options; returns 0 or a usage error.
static int
s_task_options (const cli_command_t *command, const s_task_flags_t *flags,
                drover_task_options_t *options)
{
    *options = (drover_task_options_t){
        .queue = flags->queue,
        .timeout_ms = (uint64_t)flags->timeout_ms,
        .max_attempts = flags->retries >= 0 ? (uint32_t)flags->retries + 1 : 0,
        .soft_timeout_ms = (uint64_t)flags->soft_timeout_ms,
        .retry_delay_ms = (uint64_t)flags->retry_delay_ms,
        .retry_max_delay_ms = (uint64_t)flags->retry_max_delay_ms};
    if (flags->queue && !s_name_ok (flags->queue))
        return cli_usage_error (command,
                                "'%s' is not a queue name (1-255 printable "
                                "ASCII characters, no spaces)",
                                flags->queue);
    const char *bad = NULL;
    if (flags->retry_on && *flags->retry_on
        && drover_retry_on_parse (flags->retry_on, &options->retry_on, &bad)) {
        int size = (int)strcspn (bad, ",");
        if (size == 0)
            return cli_usage_error (command,
                                    "--retry-on '%s' has an empty name: give "
                                    "names such as failed,crashed",
                                    flags->retry_on);
        return cli_usage_error (command,
                                "--retry-on: '%.*s' is not a failure name: "
                                "give names such as failed, crashed, "
                                "timelimit, memlimit, lost, handler, or "
                                "DROVER_E* names",
                                size, bad);
    }
    if (flags->soft_timeout_ms && flags->timeout_ms
        && flags->soft_timeout_ms >= flags->timeout_ms)
        return cli_usage_error (command,
                                "--soft-timeout-ms %ld must be shorter than "
                                "--timeout-ms %ld (the soft limit warns, the "
                                "hard one kills)",
                                flags->soft_timeout_ms, flags->timeout_ms);
    if (flags->retry_delay_ms && flags->retry_max_delay_ms
        && flags->retry_max_delay_ms < flags->retry_delay_ms)
        return cli_usage_error (command,
                                "--retry-max-delay-ms %ld is shorter than "
                                "--retry-delay-ms %ld",
                                flags->retry_max_delay_ms,
                                flags->retry_delay_ms);
    return 0;
}

//  Parses the task ids argv[first..argc); returns 0 or a usage error.
static int
s_parse_ids (const cli_command_t *command, int argc, char **argv, int first,
             uint64_t **ids_p, size_t *count_p)
{
    if (first >= argc)
        return cli_usage_error (command, "give at least one task ID");
    size_t count = (size_t)(argc - first);
    uint64_t *ids = (uint64_t *)calloc (count, sizeof (uint64_t));
    assert (ids);
    for (size_t i = 0; i < count; i++) {
        const char *text = argv[first + (int)i];
        char *end;
        errno = 0;
        unsigned long long id = strtoull (text, &end, 10);
        if (errno || end == text || *end || id == 0 || text[0] == '-') {
            free (ids);
            return cli_usage_error (command,
                                    "'%s' is not a task ID (a number that "
                                    "'drover submit' printed)",
                                    text);
        }
        ids[i] = id;
    }
    *ids_p = ids;
    *count_p = count;
    return 0;
}

//  Says why a task failed: "drover CMD: task ID: CODE: reason".
static void
s_print_failure (const char *command, uint64_t id, int code, const char *reason)
{
    fprintf (stderr, "drover %s: task %" PRIu64 ": %s: ", command, id,
             drover_strcode (code));
    s_print_line (stderr, reason ? reason : drover_strerror (code));
    fputc ('\n', stderr);
}

//  Prints how an attempt ran: " elapsed=1.500s cpu=0.250s
//  max_rss_kb=2048", and " signal=N exit_status=N" for a failure or when
//  not 0.
static void
s_print_forensics (int code, uint64_t elapsed_us, uint64_t cpu_us,
                   uint64_t max_rss_kb, int signal, int exit_status)
{
    printf (" elapsed=%.3fs cpu=%.3fs max_rss_kb=%" PRIu64,
            (double)elapsed_us / 1e6, (double)cpu_us / 1e6, max_rss_kb);
    if (code || signal)
        printf (" signal=%d", signal);
    if (code || exit_status)
        printf (" exit_status=%d", exit_status);
}

//  How the last attempt of a finished task ran.
typedef struct {
    bool known;          //  the rest is filled in
    int code;            //  its outcome
    uint64_t elapsed_us; //  wall time
    uint64_t cpu_us;     //  CPU time
    uint64_t max_rss_kb; //  peak memory
    int signal;          //  signal that killed the child, or 0
    int exit_status;     //  exit status, or 0
} s_outcome_t;

//  Prints a task's state on one line, with how its last attempt ran when
//  outcome is known.
static void
s_print_status (const drover_status_t *status, const s_outcome_t *outcome)
{
    printf ("%" PRIu64 " %s attempts=%" PRIu32, status->id, status->state_name,
            status->attempt);
    if (status->max_attempts)
        printf ("/%" PRIu32, status->max_attempts);
    if (status->node)
        printf (" node=%s", status->node);
    printf (" code=%s", status->code ? drover_strcode (status->code) : "0");
    if (outcome->known)
        s_print_forensics (outcome->code, outcome->elapsed_us, outcome->cpu_us,
                           outcome->max_rss_kb, outcome->signal,
                           outcome->exit_status);
    if (status->reason && *status->reason) {
        fputs (" reason=", stdout);
        s_print_line (stdout, status->reason);
    }
    fputc ('\n', stdout);
}

//  --------------------------------------------------------------------------
//  drover map: reading inputs

//  Reads records (lines, or NUL-separated) from a file descriptor without
//  ever blocking: when no full record is buffered and nothing can be read
//  now, it says DROVER_ETIMEDOUT and the map waits on the descriptor.
typedef struct {
    int fd;         //  where records come from
    char delimiter; //  '\n' or '\0'
    char *buffer;   //  read but not yet handed out
    size_t size;    //  capacity of buffer
    size_t start;   //  first octet not handed out
    size_t end;     //  end of the octets read
    size_t max;     //  longest record the cluster accepts
    bool eof;       //  read returned 0
    bool skipping;  //  dropping the rest of a record that was too long
    int error;      //  errno of a failed read, or 0
} s_reader_t;

//  Reads what can be read now; false when nothing can.
static int
s_reader_fill (s_reader_t *self)
{
    if (self->start > 0) {
        memmove (self->buffer, self->buffer + self->start,
                 self->end - self->start);
        self->end -= self->start;
        self->start = 0;
    }
    if (self->end == self->size) {
        //  A record longer than the cluster accepts is handed out cut at
        //  max + 1 octets (the map fails it as too big), then skipped
        size_t size =
            self->size * 2 > self->max + 1 ? self->max + 1 : self->size * 2;
        if (size <= self->size)
            return DROVER_ETOOBIG;
        char *buffer = (char *)realloc (self->buffer, size);
        if (!buffer)
            return DROVER_ENOMEM;
        self->buffer = buffer;
        self->size = size;
    }
    struct pollfd item = {self->fd, POLLIN, 0};
    int ready = poll (&item, 1, 0);
    if (ready == 0 || (ready == -1 && errno == EINTR))
        return DROVER_ETIMEDOUT;
    ssize_t got =
        read (self->fd, self->buffer + self->end, self->size - self->end);
    if (got > 0)
        self->end += (size_t)got;
    else if (got == 0)
        self->eof = true;
    else if (errno == EINTR || errno == EAGAIN)
        return DROVER_ETIMEDOUT;
    else {
        self->error = errno;
        return DROVER_EIO;
    }
    return 0;
}

static int
s_reader_next (void *arg, drover_payload_t *input)
{
    s_reader_t *self = (s_reader_t *)arg;
    while (true) {
        char *found = (char *)memchr (self->buffer + self->start,
                                      self->delimiter, self->end - self->start);
        if (self->skipping) {
            if (found) {
                self->start = (size_t)(found - self->buffer) + 1;
                self->skipping = false;
                continue;
            }
            self->start = self->end; //  drop it all
            if (self->eof) {
                self->skipping = false;
                return 0;
            }
        }
        else if (found) {
            input->data = self->buffer + self->start;
            input->size = (size_t)(found - self->buffer) - self->start;
            self->start += input->size + 1;
            return 1;
        }
        else if (self->eof) {
            if (self->start == self->end)
                return 0;
            //  The last record has no delimiter
            input->data = self->buffer + self->start;
            input->size = self->end - self->start;
            self->start = self->end;
            return 1;
        }
        int rc = s_reader_fill (self);
        if (rc == DROVER_ETOOBIG) {
            input->data = self->buffer;
            input->size = self->end;
            self->start = self->end;
            self->skipping = true;
            return 1;
        }
        if (rc)
            return rc;
    }
}

//  --------------------------------------------------------------------------
//  drover map: output

typedef struct {
    bool json;           //  one JSON object per result
    bool ordered;        //  a line per input, failures as empty lines
    bool progress;       //  show a progress line on stderr
    bool progress_shown; //  a progress line is on the screen
    bool stdout_tty;     //  results go to the same screen
    uint64_t done;       //  results printed
    uint64_t failed;     //  of which failures
    int64_t started;     //  when the map started (zclock_mono)
    int64_t shown_at;    //  when the progress line was drawn
} s_output_t;

static void
s_progress_clear (s_output_t *self)
{
    if (self->progress_shown) {
        fputs ("\r\033[K", stderr);
        self->progress_shown = false;
    }
}

static void
s_progress_show (s_output_t *self, drover_map_t *map)
{
    int64_t now = zclock_mono ();
    if (!self->progress || now - self->shown_at < MAP_TICK_MS)
        return;
    self->shown_at = now;
    double seconds = (double)(now - self->started) / 1000.0;
    fprintf (stderr,
             "\rdrover map: %" PRIu64 " done, %" PRIu64
             " failed, %zu in flight, %.1f tasks/s\033[K",
             self->done, self->failed, drover_map_in_flight (map),
             seconds > 0 ? (double)self->done / seconds : 0.0);
    self->progress_shown = true;
}

//  Prints a result; false when stdout would not take it.
static bool
s_output (s_output_t *self, const drover_result_t *result)
{
    self->done++;
    if (self->stdout_tty)
        s_progress_clear (self);
    if (result->code) {
        self->failed++;
        s_progress_clear (self);
        fprintf (stderr, "drover map: input %" PRIu64, result->index);
        if (result->id)
            fprintf (stderr, " (task %" PRIu64 ")", result->id);
        else
            fputs (" (not submitted)", stderr);
        fprintf (stderr, ": %s: ", drover_strcode (result->code));
        s_print_line (stderr, result->reason ? result->reason
                                             : drover_strerror (result->code));
        fputc ('\n', stderr);
    }
    if (self->json)
        return drover_json_write_result (stdout, result) == 0;
    //  A failure has no result to print: in input order an empty line keeps
    //  line N for input N; in completion order nothing is printed
    if (result->code && !self->ordered)
        return true;
    if (result->payload_size
        && fwrite (result->payload, 1, result->payload_size, stdout)
               != result->payload_size)
        return false;
    //  Command output usually ends its line already: one newline is enough
    if (s_ends_line (result->payload, result->payload_size))
        return true;
    return fputc ('\n', stdout) != EOF;
}

//  --------------------------------------------------------------------------
//  drover map

//  True when the broker holds tasks of the queue that no node takes though
//  nodes ask for work: most likely no node runs the handler.
static bool
s_stuck (drover_client_t *client, const char *queue)
{
    drover_stats_t *stats = NULL;
    if (drover_client_stats (client, &stats))
        return false;
    uint64_t queued = 0, leased = 0, credit = 0;
    for (size_t i = 0; i < stats->queue_count; i++)
        if (streq (stats->queues[i].name, queue ? queue : "default"))
            queued = stats->queues[i].queued;
    for (size_t i = 0; i < stats->node_count; i++) {
        leased += stats->nodes[i].leased;
        credit += stats->nodes[i].credit;
    }
    drover_stats_destroy (&stats);
    return queued > 0 && leased == 0 && credit > 0;
}

int
drover_cmd_map (int argc, char **argv)
{
    const char *connect = NULL;
    s_task_flags_t flags = {.retries = -1};
    long jobs = 1, window = 1000, connect_timeout = 5000;
    bool ordered = false, json = false, null = false, quiet = false,
         verbose = false, retry_failed = false;
    const char *job_dir = NULL;
    long chunksize_option = 1;
    cli_list_t handlers = {NULL, 0};
    char nproc[24];
    long cores = sysconf (_SC_NPROCESSORS_ONLN);
    snprintf (nproc, sizeof nproc, "%ld", cores > 0 ? cores : 1);
    cli_option_t options[] = {
        OPTION_CONNECT (&connect, NULL),
        {"jobs", 'j', CLI_INT, "DROVER_JOBS", nproc, 1, 65535, "N",
         "children of the local cluster's node (without --connect)", &jobs},
        {"ordered", 'k', CLI_FLAG, "DROVER_ORDERED", NULL, 0, 0, NULL,
         "print results in input order (else as they finish)", &ordered},
        {"json", 0, CLI_FLAG, "DROVER_JSON", NULL, 0, 0, NULL,
         "print one JSON object per task", &json},
        {"null", '0', CLI_FLAG, NULL, NULL, 0, 0, NULL,
         "inputs are separated by NUL, not newline", &null},
        {"window", 'w', CLI_INT, "DROVER_WINDOW", "1000", 1, 1000000, "N",
         "most tasks in flight (and results held back in order)", &window},
        {"chunksize", 0, CLI_COUNT, "DROVER_CHUNKSIZE", "1", 1,
         DROVER_MAP_MAX_CHUNKSIZE, "N|auto",
         "inputs per task, like Pool.map's chunksize: up to N per task, or "
         "auto: about 10 ms of work per task, measured as results come "
         "(inputs of a chunk share its task, attempt and retries)",
         &chunksize_option},
        {"job", 0, CLI_STRING, "DROVER_JOB", NULL, 0, 0, "DIR",
         "job log directory (created if missing): run the same command "
         "with the same DIR after a crash or kill and it prints the logged "
         "results and runs only the rest",
         &job_dir},
        {"retry-failed", 0, CLI_FLAG, "DROVER_RETRY_FAILED", NULL, 0, 0, NULL,
         "with --job: run inputs whose logged result is a failure again "
         "(with --chunksize, a chunk with a failed input runs again whole)",
         &retry_failed},
        OPTION_TASK_LIMITS (flags),
        {"queue", 'q', CLI_STRING, "DROVER_QUEUE", NULL, 0, 0, "NAME",
         "queue of the tasks [default: default]", &flags.queue},
        {"handler", 'H', CLI_LIST, NULL, NULL, 0, 0, "NAME=exec:CMD",
         "a handler for the local cluster's node (repeatable)", &handlers},
        OPTION_CONNECT_TIMEOUT (&connect_timeout),
        {"quiet", 0, CLI_FLAG, "DROVER_QUIET", NULL, 0, 0, NULL,
         "no progress line on stderr", &quiet},
        {"verbose", 'v', CLI_FLAG, "DROVER_VERBOSE", NULL, 0, 0, NULL,
         "the local cluster logs every message to stderr", &verbose},
    };
    cli_command_t command = {
        "map", "drover map [OPTIONS] HANDLER < INPUTS > RESULTS",
        "Runs HANDLER on every line of standard input (every NUL-separated "
        "record with -0), one task per input, and prints each result "
        "followed by a newline: as tasks finish, or in input order with "
        "--ordered (where a failed input prints an empty line, so line N "
        "stays input N). Failures go to stderr with the input's index; the "
        "exit "
        "status is 1 if any task failed. Without --connect (and "
        "DROVER_CONNECT) it starts a private local cluster with --jobs "
        "children and stops it at the end. With --job DIR the map is "
        "resumable: DIR logs which input became which task and every "
        "result (synced before it is printed); the same command run again "
        "with the same DIR and input prints the logged results without "
        "running them, fetches or resubmits (same task id) the tasks "
        "that were in flight, and runs the rest. A different handler, "
        "queue, --ordered, -0 or input is refused (exit status 2).",
        options, sizeof options / sizeof options[0]};
    int first_arg;
    int rc = cli_parse (&command, argc, argv, &first_arg);
    if (rc) {
        free ((void *)handlers.items);
        return rc == CLI_HELP ? 0 : 2;
    }
    bool local = !connect || !*connect;
    const char *handler = first_arg < argc ? argv[first_arg] : NULL;
    if (!handler)
        rc = cli_usage_error (&command, "name the HANDLER to run, e.g. "
                                        "'drover map echo < inputs'");
    else if (first_arg + 1 < argc)
        rc = cli_usage_error (&command,
                              "unexpected argument '%s': inputs come on "
                              "standard input",
                              argv[first_arg + 1]);
    else if (!s_name_ok (handler))
        rc = cli_usage_error (&command,
                              "'%s' is not a handler name (1-255 printable "
                              "ASCII characters, no spaces)",
                              handler);
    else if (!local && handlers.count)
        rc = cli_usage_error (&command,
                              "--handler configures the local cluster: it "
                              "cannot go with --connect");
    else if (retry_failed && !(job_dir && *job_dir))
        rc = cli_usage_error (&command,
                              "--retry-failed goes with --job DIR: it runs "
                              "the job's failed inputs again");
    uint32_t chunksize = chunksize_option == CLI_AUTO
                             ? DROVER_MAP_CHUNK_AUTO
                             : (uint32_t)chunksize_option;
    if (rc == 0 && chunksize == DROVER_MAP_CHUNK_AUTO && job_dir && *job_dir)
        rc = cli_usage_error (&command,
                              "--chunksize auto cannot go with --job: a "
                              "re-run must cut the inputs into the same "
                              "chunks; give a number");
    drover_task_options_t task_options;
    if (rc == 0)
        rc = s_task_options (&command, &flags, &task_options);
    if (rc) {
        free ((void *)handlers.items);
        return rc;
    }
    const char *queue = flags.queue;

    cli_catch_signals ();
    //  The job log (after s_catch_signals: its files must not take a
    //  closed stdout's fd): a log of another job is refused before
    //  anything starts
    drover_job_t *job = NULL;
    if (job_dir && *job_dir) {
        drover_job_config_t job_config = {job_dir,       handler,  queue,
                                          ordered,       null,     retry_failed,
                                          &task_options, chunksize};
        bool refused = false;
        char *error = NULL;
        job = drover_job_open (&job_config, &refused, &error);
        if (!job) {
            fprintf (stderr, "drover map: %s\n", error ? error : "?");
            free (error);
            free ((void *)handlers.items);
            return refused ? 2 : 1;
        }
        const drover_job_stats_t *logged = drover_job_stats (job);
        if (logged->torn || logged->corrupt)
            fprintf (stderr,
                     "drover map: warning: the job log in %s was damaged "
                     "(%" PRIu64
                     " octets of a torn last record cut off, %" PRIu64
                     " damaged regions set aside); the inputs they named are "
                     "fetched from the cluster or run again\n",
                     job_dir, logged->torn, logged->corrupt);
    }

    int status = 0;
    local_cluster_t *cluster = NULL;
    drover_client_t *client = NULL;
    drover_map_t *map = NULL;
    s_reader_t reader = {.fd = STDIN_FILENO, .delimiter = null ? '\0' : '\n'};
    s_output_t output = {.json = json,
                         .ordered = ordered,
                         .progress = !quiet && isatty (STDERR_FILENO),
                         .stdout_tty = isatty (STDOUT_FILENO),
                         .started = zclock_mono ()};

    if (local) {
        //  Our own executable runs the worker
        char exe[PATH_MAX];
        ssize_t size = readlink ("/proc/self/exe", exe, sizeof exe - 1);
        if (size <= 0) {
            fprintf (stderr, "drover map: cannot find my own executable: %s\n",
                     strerror (errno));
            status = 1;
            goto done;
        }
        exe[size] = 0;
        const char **worker_args =
            (const char **)calloc (2 * handlers.count + 1, sizeof (char *));
        assert (worker_args);
        for (size_t i = 0; i < handlers.count; i++) {
            worker_args[2 * i] = "--handler";
            worker_args[2 * i + 1] = handlers.items[i];
        }
        local_cluster_config_t config = {.exe = exe,
                                         .jobs = (int)jobs,
                                         .worker_args = worker_args,
                                         .worker_arg_count = 2 * handlers.count,
                                         .verbose = verbose};
        char error[512];
        cluster = local_cluster_start (&config, CLUSTER_READY_MS, error,
                                       sizeof error);
        free ((void *)worker_args);
        if (!cluster) {
            if (!cli_interrupted)
                fprintf (stderr,
                         "drover map: cannot start a local cluster: %s\n",
                         error);
            status = 1;
            goto done;
        }
    }
    client = s_connect_to ("map", connect, cluster, connect_timeout);
    if (!client) {
        status = 1;
        goto done;
    }
    drover_map_options_t map_options = {.task = task_options,
                                        .window = (size_t)window,
                                        .ordered = ordered,
                                        .job = job,
                                        .chunksize = chunksize};
    map =
        drover_map_new (client, handler, &map_options, s_reader_next, &reader);
    if (!map) {
        fprintf (stderr, "drover map: out of memory\n");
        status = 1;
        goto done;
    }
    drover_map_set_input_fd (map, STDIN_FILENO);
    reader.max = (size_t)drover_client_max_payload (client);
    reader.size = reader.max < READER_START ? reader.max + 1 : READER_START;
    reader.buffer = (char *)malloc (reader.size);
    assert (reader.buffer);

    bool stdout_failed = false;
    int write_error = 0;                  //  errno of a failed write
    int64_t progress_at = zclock_mono (); //  when a result last came
    int64_t probed_at = progress_at;      //  when we last asked why not
    bool warned = false;                  //  said that tasks are stuck
    bool finished = false;                //  every input had its result
    while (!cli_interrupted) {
        //  Results go out in big writes while they flow, and at once when
        //  the map has to wait for more
        drover_result_t *result = NULL;
        rc = drover_map_next (map, 0, &result);
        if (rc == DROVER_ETIMEDOUT) {
            if (fflush (stdout) == EOF) {
                write_error = errno;
                stdout_failed = true;
                break;
            }
            rc = drover_map_next (map, MAP_TICK_MS, &result);
        }
        if (rc == DROVER_ETIMEDOUT) {
            if (cluster && local_cluster_check (cluster)) {
                s_progress_clear (&output);
                fprintf (stderr, "drover map: %s\n",
                         local_cluster_reason (cluster));
                status = 1;
                break;
            }
            int64_t now = zclock_mono ();
            if (!warned && now - progress_at >= STUCK_MS
                && now - probed_at >= STUCK_MS) {
                probed_at = now;
                if (s_stuck (client, queue)) {
                    s_progress_clear (&output);
                    fprintf (stderr,
                             "drover map: tasks wait in queue '%s' but no "
                             "node takes them: does a node run handler "
                             "'%s'?%s\n",
                             queue ? queue : "default", handler,
                             cluster ? " The local node runs the built-in "
                                       "handlers and those given with "
                                       "--handler NAME=exec:CMD."
                                     : "");
                    warned = true;
                    if (cluster) {
                        status = 1;
                        break;
                    }
                }
            }
            s_progress_show (&output, map);
            continue;
        }
        if (rc) {
            s_progress_clear (&output);
            fprintf (stderr, "drover map: ");
            if (reader.error)
                fprintf (stderr, "cannot read standard input: %s",
                         strerror (reader.error));
            else
                s_print_line (stderr, drover_client_reason (client));
            fputc ('\n', stderr);
            //  The input is not the job's: like a usage error
            status = job && drover_job_refused (job) ? 2 : 1;
            break;
        }
        if (!result) {
            finished = true;
            break; //  all done
        }
        progress_at = zclock_mono ();
        bool written = s_output (&output, result);
        drover_result_destroy (&result);
        if (!written) {
            write_error = errno;
            stdout_failed = true;
            break;
        }
        s_progress_show (&output, map);
    }
    s_progress_clear (&output);
    if (!stdout_failed && fflush (stdout) == EOF) {
        write_error = errno;
        stdout_failed = true;
    }
    if (finished && job && !quiet && !drover_job_stats (job)->fresh) {
        uint64_t from_log = drover_map_from_log (map);
        if (from_log == output.done)
            fprintf (stderr,
                     "drover map: job %s is complete: all %" PRIu64
                     " results came from the job log; nothing was run\n",
                     job_dir, from_log);
        else
            fprintf (stderr,
                     "drover map: job %s resumed: %" PRIu64 " of %" PRIu64
                     " results came from the job log, %" PRIu64
                     " from tasks the cluster still held, %" PRIu64
                     " submitted again under their ids, the rest run anew\n",
                     job_dir, from_log, output.done, drover_map_found (map),
                     drover_map_resubmitted (map));
    }
    if (cli_interrupted) {
        //  A remote cluster keeps running: cancel what we started
        if (!cluster)
            drover_map_cancel (map, CANCEL_MS);
        status = s_exit_status_of_signal ();
    }
    else if (stdout_failed) {
        if (write_error != EPIPE)
            fprintf (stderr, "drover map: cannot write results: %s\n",
                     strerror (write_error));
        if (!cluster)
            drover_map_cancel (map, CANCEL_MS);
        status = write_error == EPIPE ? 128 + SIGPIPE : 1;
    }
    else if (status == 0 && output.failed) {
        if (output.progress)
            fprintf (stderr,
                     "drover map: %" PRIu64 " of %" PRIu64 " tasks failed\n",
                     output.failed, output.done);
        status = 1;
    }
done:
    drover_map_destroy (&map);
    drover_job_destroy (&job);
    drover_client_destroy (&client);
    if (cluster) {
        local_cluster_stop (cluster, cli_interrupted ? 1000 : 3000);
        local_cluster_destroy (&cluster);
    }
    free (reader.buffer);
    free ((void *)handlers.items);
    if (cli_interrupted)
        status = s_exit_status_of_signal ();
    return status;
}

//  --------------------------------------------------------------------------
//  drover submit

//  Reads all of stdin, up to max octets. Returns 0 or a DROVER_E* code.
static int
s_read_all (int fd, size_t max, char **data_p, size_t *size_p)
{
    size_t size = 0, capacity = 4096;
    char *data = (char *)malloc (capacity);
    if (!data)
        return DROVER_ENOMEM;
    while (true) {
        if (size == capacity) {
            if (capacity > max) {
                free (data);
                return DROVER_ETOOBIG;
            }
            //  max + 1 octets tell that the input is too big
            capacity = capacity > max / 2 ? max + 1 : capacity * 2;
            char *bigger = (char *)realloc (data, capacity);
            if (!bigger) {
                free (data);
                return DROVER_ENOMEM;
            }
            data = bigger;
        }
        ssize_t got = read (fd, data + size, capacity - size);
        if (got == 0)
            break;
        if (got < 0) {
            if (errno == EINTR && !cli_interrupted)
                continue;
            free (data);
            return DROVER_EIO;
        }
        size += (size_t)got;
    }
    if (size > max) {
        free (data);
        return DROVER_ETOOBIG;
    }
    *data_p = data;
    *size_p = size;
    return 0;
}

int
drover_cmd_submit (int argc, char **argv)
{
    const char *connect = NULL;
    s_task_flags_t flags = {.retries = -1};
    long connect_timeout = 5000;
    cli_option_t options[] = {
        OPTION_CONNECT (&connect, DEFAULT_BROKER),
        {"queue", 'q', CLI_STRING, "DROVER_QUEUE", NULL, 0, 0, "NAME",
         "queue of the task [default: default]", &flags.queue},
        OPTION_TASK_LIMITS (flags),
        OPTION_CONNECT_TIMEOUT (&connect_timeout),
    };
    cli_command_t command = {
        "submit", "drover submit [OPTIONS] HANDLER [PAYLOAD|-]",
        "Submits one task that runs HANDLER on PAYLOAD (standard input when "
        "PAYLOAD is - or missing) and prints its task ID. 'drover wait', "
        "'result', 'status' and 'cancel' take that ID.",
        options, sizeof options / sizeof options[0]};
    int first_arg;
    int rc = cli_parse (&command, argc, argv, &first_arg);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    if (first_arg >= argc)
        return cli_usage_error (&command, "name the HANDLER to run");
    if (first_arg + 2 < argc)
        return cli_usage_error (&command,
                                "unexpected argument '%s': give one PAYLOAD "
                                "(quote it if it has spaces)",
                                argv[first_arg + 2]);
    const char *handler = argv[first_arg];
    const char *payload = first_arg + 1 < argc ? argv[first_arg + 1] : "-";
    if (!s_name_ok (handler))
        return cli_usage_error (&command,
                                "'%s' is not a handler name (1-255 printable "
                                "ASCII characters, no spaces)",
                                handler);
    drover_task_options_t task;
    rc = s_task_options (&command, &flags, &task);
    if (rc)
        return rc;
    cli_catch_signals ();
    char *data = NULL;
    size_t size = 0;
    if (streq (payload, "-")) {
        rc = s_read_all (STDIN_FILENO, DROVER_MAX_PAYLOAD, &data, &size);
        if (rc) {
            fprintf (stderr,
                     "drover submit: cannot read the payload from "
                     "standard input: %s\n",
                     rc == DROVER_EIO ? strerror (errno)
                                      : drover_strerror (rc));
            return 1;
        }
    }
    drover_client_t *client = s_connect ("submit", connect, connect_timeout);
    if (!client) {
        free (data);
        return cli_interrupted ? s_exit_status_of_signal () : 1;
    }
    uint64_t id = 0;
    rc = drover_client_submit (client, handler, data ? data : payload,
                               data ? size : strlen (payload), &task, &id);
    if (rc && cli_interrupted)
        ; //  the exit status says it
    else if (rc) {
        fprintf (stderr, "drover submit: %s: ", drover_strcode (rc));
        s_print_line (stderr, drover_client_reason (client));
        if (rc == DROVER_EFULL)
            fputs ("; retry later", stderr);
        fputc ('\n', stderr);
    }
    else
        printf ("%" PRIu64 "\n", id);
    free (data);
    drover_client_destroy (&client);
    if (cli_interrupted)
        return s_exit_status_of_signal ();
    return rc || fflush (stdout) == EOF || ferror (stdout) ? 1 : 0;
}

//  --------------------------------------------------------------------------
//  drover wait and drover result

//  Waits for the tasks; with print, prints their results in order.
static int
s_wait_or_result (int argc, char **argv, bool print)
{
    const char *connect = NULL;
    long timeout = 0, connect_timeout = 5000;
    cli_option_t options[] = {
        OPTION_CONNECT (&connect, DEFAULT_BROKER),
        {"timeout", 't', CLI_INT, "DROVER_TIMEOUT", "0", 0, INT_MAX / 1000,
         "SECONDS", "give up after this long; 0: wait for ever", &timeout},
        OPTION_CONNECT_TIMEOUT (&connect_timeout),
    };
    cli_command_t wait_command = {
        "wait", "drover wait [OPTIONS] ID...",
        "Waits until the tasks have finished. Exits with 0 when all of them "
        "succeeded, else with 1 after saying on stderr which failed and why.",
        options, sizeof options / sizeof options[0]};
    cli_command_t result_command = {
        "result", "drover result [OPTIONS] ID...",
        "Waits for the tasks and prints the result of each, followed by a "
        "newline, in the order of the IDs (an empty line for a failed "
        "task). Exits with 1 if any failed, saying why on stderr.",
        options, sizeof options / sizeof options[0]};
    cli_command_t *command = print ? &result_command : &wait_command;
    const char *name = command->command;
    int first_arg;
    int rc = cli_parse (command, argc, argv, &first_arg);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    uint64_t *ids;
    size_t count;
    rc = s_parse_ids (command, argc, argv, first_arg, &ids, &count);
    if (rc)
        return rc;
    cli_catch_signals ();
    drover_client_t *client = s_connect (name, connect, connect_timeout);
    if (!client) {
        free (ids);
        return cli_interrupted ? s_exit_status_of_signal () : 1;
    }
    //  Unknown ids would be waited for in vain: ask first
    drover_status_t *statuses = NULL;
    rc = drover_client_status (client, ids, count, &statuses);
    uint64_t *waiting = (uint64_t *)calloc (count, sizeof (uint64_t));
    drover_result_t **results =
        (drover_result_t **)calloc (count, sizeof (drover_result_t *));
    assert (waiting && results);
    size_t waiting_count = 0;
    bool failed = false;
    for (size_t i = 0; rc == 0 && i < count; i++) {
        bool seen = false; //  an id given twice is waited for once
        for (size_t j = 0; j < waiting_count && !seen; j++)
            seen = waiting[j] == ids[i];
        if (statuses[i].state == DROVER_TASK_UNKNOWN) {
            s_print_failure (name, ids[i], DROVER_ENOTFOUND,
                             "no such task (or its result was read and "
                             "released)");
            failed = true;
        }
        else if (!seen)
            waiting[waiting_count++] = ids[i];
    }
    if (rc == 0 && waiting_count) {
        rc = drover_client_wait (client, waiting, waiting_count,
                                 timeout ? (int)timeout * 1000 : -1, false,
                                 results);
        if (rc == DROVER_ETIMEDOUT && !cli_interrupted)
            rc = 0; //  said per task below
    }
    if (rc == 0 && !cli_interrupted) {
        for (size_t i = 0; i < count; i++) {
            drover_result_t *result = NULL;
            for (size_t j = 0; j < waiting_count && !result; j++)
                if (waiting[j] == ids[i])
                    result = results[j];
            if (statuses[i].state != DROVER_TASK_UNKNOWN && !result) {
                fprintf (stderr,
                         "drover %s: task %" PRIu64
                         ": not finished after %ld s\n",
                         name, ids[i], timeout);
                failed = true;
            }
            else if (result && result->code) {
                s_print_failure (name, ids[i], result->code, result->reason);
                failed = true;
            }
            if (print) {
                bool ok = result && result->code == 0;
                if (ok && result->payload_size)
                    fwrite (result->payload, 1, result->payload_size, stdout);
                if (!ok || !s_ends_line (result->payload, result->payload_size))
                    fputc ('\n', stdout);
            }
        }
        if (fflush (stdout) == EOF || ferror (stdout))
            failed = true; //  a lost result is a failure
    }
    else if (rc && !cli_interrupted) {
        fprintf (stderr, "drover %s: ", name);
        s_print_line (stderr, drover_client_reason (client));
        fputc ('\n', stderr);
    }
    for (size_t i = 0; i < waiting_count; i++)
        drover_result_destroy (&results[i]);
    free (results);
    free (waiting);
    drover_status_destroy (&statuses);
    drover_client_destroy (&client);
    free (ids);
    if (cli_interrupted)
        return s_exit_status_of_signal ();
    return rc || failed ? 1 : 0;
}

int
drover_cmd_wait (int argc, char **argv)
{
    return s_wait_or_result (argc, argv, false);
}

int
drover_cmd_result (int argc, char **argv)
{
    return s_wait_or_result (argc, argv, true);
}

//  --------------------------------------------------------------------------
//  drover status and drover cancel

//  Most ms to wait for a stored result that tells how a task ran: the
//  sink sends the results it holds at once; one it released never comes.
#define OUTCOME_WAIT_MS 1000

//  Finds out how the last attempt of each finished task among statuses ran
//  (STATUS_REPLY carries only code, reason and node): from the broker's
//  dead letters for failed tasks, else from the result the sink stores
//  (WATCH without release: it stays there). outcomes[i] stays unknown when
//  neither has it.
static void
s_fetch_outcomes (drover_client_t *client, const drover_status_t *statuses,
                  size_t count, int timeout_ms, s_outcome_t *outcomes)
{
    uint64_t *ids = (uint64_t *)calloc (count + 1, sizeof (uint64_t));
    drover_result_t **got =
        (drover_result_t **)calloc (count + 1, sizeof (drover_result_t *));
    assert (ids && got);
    //  Failed tasks: their dead letters (an old broker may refuse DEAD)
    size_t asked = 0;
    for (size_t i = 0; i < count; i++)
        if (statuses[i].state == DROVER_TASK_FAILED)
            ids[asked++] = statuses[i].id;
    drover_dead_list_t *list = NULL;
    if (asked && drover_client_dead (client, ids, asked, &list) == 0)
        for (size_t j = 0; j < list->task_count; j++) {
            const drover_dead_t *dead = &list->tasks[j];
            const drover_attempt_t *last =
                &dead->attempts[dead->attempt_count - 1];
            for (size_t i = 0; i < count; i++)
                if (statuses[i].id == dead->id)
                    outcomes[i] = (s_outcome_t){true,
                                                last->code,
                                                last->elapsed_us,
                                                last->cpu_us,
                                                last->max_rss_kb,
                                                last->signal,
                                                last->exit_status};
        }
    drover_dead_list_destroy (&list);
    //  The other finished ones: their stored results
    asked = 0;
    for (size_t i = 0; i < count; i++) {
        int state = statuses[i].state;
        if (outcomes[i].known
            || (state != DROVER_TASK_DONE && state != DROVER_TASK_FAILED
                && state != DROVER_TASK_CANCELLED))
            continue;
        bool seen = false; //  an id given twice is asked for once
        for (size_t j = 0; j < asked && !seen; j++)
            seen = ids[j] == statuses[i].id;
        if (!seen)
            ids[asked++] = statuses[i].id;
    }
    if (asked)
        drover_client_wait (client, ids, asked,
                            timeout_ms < OUTCOME_WAIT_MS ? timeout_ms
                                                         : OUTCOME_WAIT_MS,
                            false, got);
    for (size_t j = 0; j < asked; j++) {
        const drover_result_t *result = got[j];
        for (size_t i = 0; result && i < count; i++)
            if (statuses[i].id == result->id)
                outcomes[i] = (s_outcome_t){true,
                                            result->code,
                                            result->elapsed_us,
                                            result->cpu_us,
                                            result->max_rss_kb,
                                            result->signal,
                                            result->exit_status};
        drover_result_destroy (&got[j]);
    }
    free (got);
    free (ids);
}

static int
s_status_or_cancel (int argc, char **argv, bool cancel)
{
    const char *connect = NULL;
    long connect_timeout = 5000;
    cli_option_t options[] = {
        OPTION_CONNECT (&connect, DEFAULT_BROKER),
        OPTION_CONNECT_TIMEOUT (&connect_timeout),
    };
    cli_command_t status_command = {
        "status", "drover status [OPTIONS] ID...",
        "Prints the state of each task on one line: ID, state (queued, "
        "leased, retrying, reporting, done, failed, cancelled or unknown), "
        "attempts, node, the code of its last failure, for a finished task "
        "how its last attempt ran (wall and CPU time, peak memory, signal "
        "and exit status), and last the reason of its failure. Exits with 1 "
        "if a task is unknown.",
        options, sizeof options / sizeof options[0]};
    cli_command_t cancel_command = {
        "cancel", "drover cancel [OPTIONS] ID...",
        "Cancels the tasks (running ones are stopped) and prints the state "
        "of each afterwards, as 'drover status' does. Finished tasks stay "
        "as they are. Exits with 1 if a task is unknown.",
        options, sizeof options / sizeof options[0]};
    cli_command_t *command = cancel ? &cancel_command : &status_command;
    int first_arg;
    int rc = cli_parse (command, argc, argv, &first_arg);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    uint64_t *ids;
    size_t count;
    rc = s_parse_ids (command, argc, argv, first_arg, &ids, &count);
    if (rc)
        return rc;
    cli_catch_signals ();
    drover_client_t *client =
        s_connect (command->command, connect, connect_timeout);
    if (!client) {
        free (ids);
        return cli_interrupted ? s_exit_status_of_signal () : 1;
    }
    drover_status_t *statuses = NULL;
    rc = cancel ? drover_client_cancel (client, ids, count, &statuses)
                : drover_client_status (client, ids, count, &statuses);
    s_outcome_t *outcomes = (s_outcome_t *)calloc (count, sizeof *outcomes);
    assert (outcomes);
    if (rc == 0 && !cancel)
        s_fetch_outcomes (client, statuses, count, (int)connect_timeout,
                          outcomes);
    bool unknown = false;
    if (rc && cli_interrupted)
        ; //  the exit status says it
    else if (rc) {
        fprintf (stderr, "drover %s: ", command->command);
        s_print_line (stderr, drover_client_reason (client));
        fputc ('\n', stderr);
    }
    else
        for (size_t i = 0; i < count; i++) {
            s_print_status (&statuses[i], &outcomes[i]);
            unknown |= statuses[i].state == DROVER_TASK_UNKNOWN;
        }
    free (outcomes);
    drover_status_destroy (&statuses);
    drover_client_destroy (&client);
    free (ids);
    if (cli_interrupted)
        return s_exit_status_of_signal ();
    bool lost = fflush (stdout) == EOF || ferror (stdout);
    return rc || unknown || lost ? 1 : 0;
}

int
drover_cmd_status (int argc, char **argv)
{
    return s_status_or_cancel (argc, argv, false);
}

int
drover_cmd_cancel (int argc, char **argv)
{
    return s_status_or_cancel (argc, argv, true);
}

//  --------------------------------------------------------------------------
//  drover stats

int
drover_cmd_stats (int argc, char **argv)
{
    const char *connect = NULL;
    long connect_timeout = 5000;
    cli_option_t options[] = {
        OPTION_CONNECT (&connect, DEFAULT_BROKER),
        OPTION_CONNECT_TIMEOUT (&connect_timeout),
    };
    cli_command_t command = {
        "stats", "drover stats [OPTIONS]",
        "Prints the broker's queues (tasks queued and leased), its nodes "
        "(children, credit, leased tasks, attempts done) and its counters.",
        options, sizeof options / sizeof options[0]};
    int rc = cli_parse_no_args (&command, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    cli_catch_signals ();
    drover_client_t *client = s_connect ("stats", connect, connect_timeout);
    if (!client)
        return cli_interrupted ? s_exit_status_of_signal () : 1;
    drover_stats_t *stats = NULL;
    rc = drover_client_stats (client, &stats);
    if (rc) {
        if (!cli_interrupted) {
            fprintf (stderr, "drover stats: ");
            s_print_line (stderr, drover_client_reason (client));
            fputc ('\n', stderr);
        }
        drover_client_destroy (&client);
        return cli_interrupted ? s_exit_status_of_signal () : 1;
    }
    int width = 8;
    for (size_t i = 0; i < stats->queue_count; i++)
        if ((int)strlen (stats->queues[i].name) > width)
            width = (int)strlen (stats->queues[i].name);
    for (size_t i = 0; i < stats->node_count; i++)
        if ((int)strlen (stats->nodes[i].name) > width)
            width = (int)strlen (stats->nodes[i].name);
    for (size_t i = 0; i < stats->counter_count; i++)
        if ((int)strlen (stats->counters[i].name) > width)
            width = (int)strlen (stats->counters[i].name);
    printf ("queues:\n");
    if (stats->queue_count == 0)
        printf ("  (none)\n");
    for (size_t i = 0; i < stats->queue_count; i++)
        printf ("  %-*s  queued %" PRIu64 "  leased %" PRIu64 "\n", width,
                stats->queues[i].name, stats->queues[i].queued,
                stats->queues[i].leased);
    printf ("nodes:\n");
    if (stats->node_count == 0)
        printf ("  (none)\n");
    for (size_t i = 0; i < stats->node_count; i++)
        printf ("  %-*s  children %" PRIu32 "  credit %" PRIu64
                "  leased %" PRIu64 "  done %" PRIu64 "\n",
                width, stats->nodes[i].name, stats->nodes[i].children,
                stats->nodes[i].credit, stats->nodes[i].leased,
                stats->nodes[i].done);
    printf ("counters:\n");
    if (stats->counter_count == 0)
        printf ("  (none)\n");
    for (size_t i = 0; i < stats->counter_count; i++)
        printf ("  %-*s  %" PRIu64 "\n", width, stats->counters[i].name,
                stats->counters[i].value);
    drover_stats_destroy (&stats);
    drover_client_destroy (&client);
    return fflush (stdout) == EOF || ferror (stdout) ? 1 : 0;
}

//  --------------------------------------------------------------------------
//  drover dead

//  Prints a dead letter: one line for the task, one per attempt.
static void
s_print_dead (const drover_dead_t *dead)
{
    printf ("%" PRIu64 " dead handler=%s queue=%s attempts=%zu", dead->id,
            dead->handler ? dead->handler : "?",
            dead->queue ? dead->queue : "default", dead->attempt_count);
    if (dead->max_attempts)
        printf ("/%" PRIu32, dead->max_attempts);
    printf (" code=%s reason=", drover_strcode (dead->code));
    s_print_line (stdout, dead->reason && *dead->reason
                              ? dead->reason
                              : drover_strerror (dead->code));
    fputc ('\n', stdout);
    for (size_t i = 0; i < dead->attempt_count; i++) {
        const drover_attempt_t *attempt = &dead->attempts[i];
        printf ("  attempt=%" PRIu32 " node=%s code=%s", attempt->attempt,
                attempt->node ? attempt->node : "?",
                drover_strcode (attempt->code));
        s_print_forensics (attempt->code, attempt->elapsed_us, attempt->cpu_us,
                           attempt->max_rss_kb, attempt->signal,
                           attempt->exit_status);
        fputs (" reason=", stdout);
        s_print_line (stdout, attempt->reason && *attempt->reason
                                  ? attempt->reason
                                  : drover_strerror (attempt->code));
        fputc ('\n', stdout);
    }
}

static int
s_dead_list (int argc, char **argv)
{
    const char *connect = NULL;
    long connect_timeout = 5000;
    bool json = false;
    cli_option_t options[] = {
        OPTION_CONNECT (&connect, DEFAULT_BROKER),
        {"json", 0, CLI_FLAG, "DROVER_JSON", NULL, 0, 0, NULL,
         "print one JSON object per task, with its history", &json},
        OPTION_CONNECT_TIMEOUT (&connect_timeout),
    };
    cli_command_t command = {
        "dead list", "drover dead list [OPTIONS] [ID...]",
        "Prints the dead letters (tasks that failed for good) among the IDs, "
        "or without IDs the oldest the broker holds (as many as fit in one "
        "reply). Each task takes one line (ID, handler, queue, attempts, the "
        "last code and reason), then one line per attempt: node, code, wall "
        "and CPU time, peak memory, signal, exit status and reason. Exits "
        "with 1 if one of the IDs is not a dead letter.",
        options, sizeof options / sizeof options[0]};
    int first_arg;
    int rc = cli_parse (&command, argc, argv, &first_arg);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    uint64_t *ids = NULL;
    size_t count = 0;
    if (first_arg < argc) {
        rc = s_parse_ids (&command, argc, argv, first_arg, &ids, &count);
        if (rc)
            return rc;
    }
    cli_catch_signals ();
    drover_client_t *client = s_connect ("dead list", connect, connect_timeout);
    if (!client) {
        free (ids);
        return cli_interrupted ? s_exit_status_of_signal () : 1;
    }
    drover_dead_list_t *list = NULL;
    rc = drover_client_dead (client, ids, count, &list);
    bool missing = false, lost = false;
    if (rc && cli_interrupted)
        ; //  the exit status says it
    else if (rc) {
        fprintf (stderr, "drover dead list: %s: ", drover_strcode (rc));
        s_print_line (stderr, drover_client_reason (client));
        fputc ('\n', stderr);
    }
    else {
        for (size_t i = 0; i < list->task_count && !lost; i++)
            if (json)
                lost = drover_json_write_dead (stdout, &list->tasks[i]) != 0;
            else
                s_print_dead (&list->tasks[i]);
        for (size_t i = 0; i < count; i++) {
            bool found = false;
            for (size_t j = 0; j < list->task_count && !found; j++)
                found = list->tasks[j].id == ids[i];
            if (!found) {
                fprintf (stderr,
                         "drover dead list: task %" PRIu64
                         " is not a dead letter (unknown, still running, "
                         "succeeded, cancelled, or retried already)\n",
                         ids[i]);
                missing = true;
            }
        }
    }
    drover_dead_list_destroy (&list);
    drover_client_destroy (&client);
    free (ids);
    if (cli_interrupted)
        return s_exit_status_of_signal ();
    lost |= fflush (stdout) == EOF || ferror (stdout);
    return rc || missing || lost ? 1 : 0;
}

static int
s_dead_retry (int argc, char **argv)
{
    const char *connect = NULL;
    long connect_timeout = 5000;
    bool all = false;
    cli_option_t options[] = {
        OPTION_CONNECT (&connect, DEFAULT_BROKER),
        {"all", 'a', CLI_FLAG, NULL, NULL, 0, 0, NULL,
         "retry every dead letter the broker holds", &all},
        OPTION_CONNECT_TIMEOUT (&connect_timeout),
    };
    cli_command_t command = {
        "dead retry", "drover dead retry [OPTIONS] ID...|--all",
        "Submits the dead letters again as new tasks, with their handler, "
        "queue, options and input, and prints the new task IDs, one per "
        "line, in the order of the IDs. If one ID is not a dead letter, "
        "nothing is retried and the exit status is 1.",
        options, sizeof options / sizeof options[0]};
    int first_arg;
    int rc = cli_parse (&command, argc, argv, &first_arg);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    if (all && first_arg < argc)
        return cli_usage_error (&command, "give task IDs or --all, not both");
    uint64_t *ids = NULL;
    size_t count = 0;
    if (!all) {
        rc = s_parse_ids (&command, argc, argv, first_arg, &ids, &count);
        if (rc)
            return rc;
    }
    cli_catch_signals ();
    drover_client_t *client =
        s_connect ("dead retry", connect, connect_timeout);
    if (!client) {
        free (ids);
        return cli_interrupted ? s_exit_status_of_signal () : 1;
    }
    uint64_t *new_ids = NULL;
    size_t new_count = 0;
    rc = drover_client_retry (client, ids, count, all, &new_ids, &new_count);
    if (rc && cli_interrupted)
        ; //  the exit status says it
    else if (rc) {
        fprintf (stderr, "drover dead retry: %s: ", drover_strcode (rc));
        s_print_line (stderr, drover_client_reason (client));
        fputc ('\n', stderr);
    }
    else
        for (size_t i = 0; i < new_count; i++)
            printf ("%" PRIu64 "\n", new_ids[i]);
    free (new_ids);
    drover_client_destroy (&client);
    free (ids);
    if (cli_interrupted)
        return s_exit_status_of_signal ();
    return rc || fflush (stdout) == EOF || ferror (stdout) ? 1 : 0;
}

int
drover_cmd_dead (int argc, char **argv)
{
    cli_command_t command = {
        "dead", "drover dead list|retry [OPTIONS] [ID...]",
        "Tasks that failed for good (their attempts ran out, or their "
        "failure does not retry) stay with the broker as dead letters, with "
        "their input and the history of their attempts.\n\n"
        "  drover dead list [ID...]       print dead letters and their "
        "attempts\n"
        "  drover dead retry ID...|--all  submit dead letters again\n\n"
        "'drover dead list --help' and 'drover dead retry --help' tell more.",
        NULL, 0};
    int first_arg;
    int rc = cli_parse (&command, argc, argv, &first_arg);
    if (rc)
        return rc == CLI_HELP ? 0 : 2;
    if (first_arg >= argc)
        return cli_usage_error (&command, "say what to do: list or retry");
    const char *action = argv[first_arg];
    if (streq (action, "list"))
        return s_dead_list (argc - first_arg, argv + first_arg);
    if (streq (action, "retry"))
        return s_dead_retry (argc - first_arg, argv + first_arg);
    return cli_usage_error (&command, "'%s' is not list or retry", action);
}
