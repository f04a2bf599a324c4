/*  cmd_bench.c - `drover bench`: throughput (one task per input, and
    chunked maps), latency, dispatch efficiency, payload sizes, durability
    and memory of a Drover cluster, next to the ceiling
    of plain ZeroMQ on the same machine, as a table or as JSON.

    Thin: options, the order of the scenarios, and the output. The Drover
    workloads are in bench_drover.c, the plain-ZeroMQ ceiling in
    bench_zmq.c.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "bench_drover.h"
#include "bench_zmq.h"
#include "commands.h"
#include "drover_json.h"
#include "drover_map.h"
#include "interrupt.h"
#include "options.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROWS     64
#define MAX_NOTES    8
#define MAX_SIZES    8
#define MAX_MODES    4
#define MIB          (1024.0 * 1024.0)
#define WINDOW_BYTES (64 * 1024 * 1024) //  payload octets in flight, at most
#define WARMUP_MAX   2000               //  warm-up tasks, at most
#define SCENARIO_LIST                                                          \
    "throughput,chunked,latency,dispatch,payload,durable,memory,ceiling"

//  The scenarios, in the order of the table.
typedef enum {
    S_THROUGHPUT,
    S_CHUNKED,
    S_LATENCY,
    S_DISPATCH,
    S_PAYLOAD,
    S_DURABLE,
    S_MEMORY,
    S_CEILING,
    S_COUNT
} s_scenario_t;

static const char *s_scenario_names[S_COUNT] = {
    "throughput", "chunked", "latency", "dispatch",
    "payload",    "durable", "memory",  "ceiling"};

static const char *s_fsync_names[MAX_MODES] = {"memory", "never", "batch",
                                               "always"};

//  The options, as given.
typedef struct {
    const char *connect;     //  --connect, or NULL: local
    long jobs;               //  --jobs
    const char *scenarios;   //  --scenarios
    long tasks;              //  --tasks
    long items;              //  --items
    long chunksize;          //  --chunksize, CLI_AUTO for auto
    long queued;             //  --queued
    long map_lines;          //  --map-lines
    long window;             //  --window
    long samples;            //  --samples
    long warmup;             //  --warmup
    long dispatch_tasks;     //  --dispatch-tasks
    long dispatch_children;  //  --dispatch-children
    long sleep_ms;           //  --sleep-ms
    const char *sizes;       //  --payload-sizes
    long payload_mb;         //  --payload-mb
    const char *fsync_modes; //  --fsync-modes
    long messages;           //  --messages; 0: --tasks
    long credits;            //  --credits
    long connect_timeout;    //  --connect-timeout
    bool json;               //  --json
    bool quiet;              //  --quiet
} s_options_t;

//  One measurement: a line of the table, an object of "results".
typedef struct {
    s_scenario_t scenario;
    const char *transport;   //  "ipc", "tcp", or NULL
    const char *pattern;     //  ceiling: "push-pull", "router-credit"
    const char *fsync;       //  durable: "memory", "never"...
    const char *chunksize;   //  chunked: "auto" or a number
    size_t payload;          //  octets per task or message
    uint64_t count;          //  tasks, messages or samples
    double seconds;          //  measured time
    double per_second;       //  count / seconds
    double ceiling_fraction; //  of the router-credit ceiling; < 0: unknown
    double percentiles[4];   //  latency: p50, p90, p99, p99.9 (us)
    long children;           //  dispatch: children
    long sleep_ms;           //  dispatch: per task
    double ideal_seconds;    //  dispatch: tasks x sleep / children
    double sleep_us;         //  dispatch: what one sleep of sleep_ms
                             //  takes in this process (the kernel's floor)
    const char *what;        //  memory: "broker" or "map"
    double octets_per_task;  //  memory, broker: RSS growth per queued task
    long rss_kb;             //  memory: the broker's RSS growth, or the
                             //  map's peak RSS
} s_row_t;

typedef struct {
    s_options_t options;
    bool selected[S_COUNT];       //  scenarios to run
    char chunksize[24];           //  --chunksize in words: "auto" or N
    size_t sizes[MAX_SIZES];      //  payload sizes
    size_t size_count;            //  how many
    const char *modes[MAX_MODES]; //  durable modes
    size_t mode_count;            //  how many
    bool local;                   //  a private local cluster
    char exe[PATH_MAX];           //  our executable, for local clusters
    bench_drover_t *drover;       //  the cluster of the main scenarios
    char *endpoint;               //  its endpoint, once known
    long children;                //  children it has
    const char *transport;        //  its transport
    s_row_t rows[MAX_ROWS];       //  the results
    size_t row_count;             //  how many
    char notes[MAX_NOTES][256];   //  what the reader should know
    size_t note_count;            //  how many
    const char *current;          //  the scenario that runs, or NULL
    char error[1024];             //  why it failed
} s_bench_t;

//  --------------------------------------------------------------------------
//  Options

//  Parses a comma-separated list of names out of names[count]; marks each
//  one found in chosen. Returns NULL, or the bad item (static copy).
static const char *
s_parse_names (const char *text, const char *const *names, size_t count,
               bool *chosen)
{
    static char bad[64];
    for (const char *item = text; *item;) {
        size_t size = strcspn (item, ",");
        bool found = false;
        for (size_t i = 0; i < count; i++)
            if (strlen (names[i]) == size && !strncmp (item, names[i], size))
                found = chosen[i] = true;
        if (!found) {
            snprintf (bad, sizeof bad, "%.*s", (int)size, item);
            return bad;
        }
        item += size + (item[size] == ',');
    }
    return NULL;
}

//  Parses one size: a number of octets, with K or M for KiB or MiB.
static bool
s_parse_size (const char *text, size_t length, size_t *size_p)
{
    char item[32];
    if (length == 0 || length >= sizeof item)
        return false;
    memcpy (item, text, length);
    item[length] = 0;
    char *end;
    errno = 0;
    unsigned long value = strtoul (item, &end, 10);
    unsigned long unit = 1;
    if (*end == 'K' || *end == 'k')
        unit = 1024;
    else if (*end == 'M' || *end == 'm')
        unit = 1024 * 1024;
    if (unit > 1)
        end++;
    if (errno || end == item || *end || item[0] == '-' || value == 0
        || value > 64 * 1024 * 1024 / unit)
        return false;
    *size_p = (size_t)(value * unit);
    return true;
}

static int
s_parse_sizes (s_bench_t *self, const cli_command_t *command)
{
    const char *text = self->options.sizes;
    for (const char *item = text; *item;) {
        size_t length = strcspn (item, ",");
        if (self->size_count == MAX_SIZES
            || !s_parse_size (item, length, &self->sizes[self->size_count]))
            return cli_usage_error (command,
                                    "--payload-sizes takes up to %d sizes "
                                    "from 1 to 64M, such as 16,1K,64K,1M, "
                                    "not '%s'",
                                    MAX_SIZES, text);
        self->size_count++;
        item += length + (item[length] == ',');
    }
    if (self->size_count == 0)
        return cli_usage_error (command, "--payload-sizes is empty");
    return 0;
}

//  Checks what the options say together; returns 0 or a usage error.
static int
s_check_options (s_bench_t *self, const cli_command_t *command)
{
    s_options_t *options = &self->options;
    bool all = !strcmp (options->scenarios, "all");
    for (size_t i = 0; all && i < S_COUNT; i++)
        self->selected[i] = true;
    const char *bad = all ? NULL
                          : s_parse_names (options->scenarios, s_scenario_names,
                                           S_COUNT, self->selected);
    if (bad || !*options->scenarios)
        return cli_usage_error (command,
                                "--scenarios: '%s' is not a scenario: give "
                                "all or some of " SCENARIO_LIST,
                                bad ? bad : "");
    bool modes[MAX_MODES] = {false};
    bad = s_parse_names (options->fsync_modes, s_fsync_names, MAX_MODES, modes);
    if (bad || !*options->fsync_modes)
        return cli_usage_error (command,
                                "--fsync-modes: '%s' is not a mode: give "
                                "some of memory,never,batch,always",
                                bad ? bad : "");
    for (size_t i = 0; i < MAX_MODES; i++)
        if (modes[i])
            self->modes[self->mode_count++] = s_fsync_names[i];
    self->local = !options->connect || !*options->connect;
    if (options->chunksize == CLI_AUTO)
        snprintf (self->chunksize, sizeof self->chunksize, "auto");
    else
        snprintf (self->chunksize, sizeof self->chunksize, "%ld",
                  options->chunksize);
    return s_parse_sizes (self, command);
}

static int
s_parse (s_bench_t *self, int argc, char **argv)
{
    s_options_t *o = &self->options;
    cli_option_t options[] = {
        {"connect", 'c', CLI_STRING, "DROVER_CONNECT", NULL, 0, 0, "EP",
         "measure the running cluster at EP (else a private local one)",
         &o->connect},
        {"jobs", 'j', CLI_INT, "DROVER_JOBS", "2", 1, 1024, "N",
         "children of the local cluster's node", &o->jobs},
        {"scenarios", 's', CLI_STRING, NULL, "all", 0, 0, "LIST",
         "scenarios to run, comma-separated: all or " SCENARIO_LIST,
         &o->scenarios},
        {"tasks", 'n', CLI_INT, NULL, "20000", 1, 100000000, "N",
         "echo tasks of throughput and of each durable run; also the most "
         "tasks per payload size",
         &o->tasks},
        {"items", 0, CLI_INT, NULL, "2000000", 1, 1000000000, "N",
         "chunked: echo inputs of 16 bytes through a chunked map", &o->items},
        {"chunksize", 0, CLI_COUNT, NULL, "auto", 1, DROVER_MAP_MAX_CHUNKSIZE,
         "N|auto", "chunked: inputs per task", &o->chunksize},
        {"queued", 0, CLI_INT, NULL, "1000000", 1, 100000000, "N",
         "memory: 16-byte tasks the broker holds queued", &o->queued},
        {"map-lines", 0, CLI_INT, NULL, "10000000", 1, 1000000000, "N",
         "memory: input lines of a `drover map -j N --chunksize auto` process",
         &o->map_lines},
        {"window", 'w', CLI_INT, NULL, "1000", 1, 1000000, "N",
         "most tasks in flight in the map (fewer for big payloads: at most "
         "64 MiB in flight)",
         &o->window},
        {"samples", 0, CLI_INT, NULL, "2000", 1, 10000000, "N",
         "latency: round trips measured", &o->samples},
        {"warmup", 0, CLI_INT, NULL, "100", 0, 10000000, "N",
         "latency: round trips before measuring", &o->warmup},
        {"dispatch-tasks", 0, CLI_INT, NULL, "2000", 1, 10000000, "N",
         "dispatch: sleep tasks", &o->dispatch_tasks},
        {"dispatch-children", 0, CLI_INT, NULL, "8", 1, 1024, "N",
         "dispatch: children of its own local cluster (with --connect: "
         "those the cluster has)",
         &o->dispatch_children},
        {"sleep-ms", 0, CLI_INT, NULL, "1", 0, 60000, "MS",
         "dispatch: how long each task sleeps", &o->sleep_ms},
        {"payload-sizes", 0, CLI_STRING, NULL, "16,1K,64K,1M", 0, 0, "LIST",
         "payload: sizes in octets, K for KiB, M for MiB", &o->sizes},
        {"payload-mb", 0, CLI_INT, NULL, "256", 1, 65536, "MIB",
         "payload: the most MiB of payloads per size (fewer tasks for big "
         "payloads)",
         &o->payload_mb},
        {"fsync-modes", 0, CLI_STRING, NULL, "memory,never,batch,always", 0, 0,
         "LIST", "durable: broker in memory, or with --data and --fsync MODE",
         &o->fsync_modes},
        {"messages", 'm', CLI_INT, NULL, NULL, 1, 20000000, "N",
         "ceiling: messages of each router-credit run; push-pull runs send "
         "50 times as many (they are that much faster) [default: --tasks]",
         &o->messages},
        {"credits", 0, CLI_INT, NULL, "1", 1, 1000, "N",
         "ceiling: credits each router-credit worker keeps out (1: a task "
         "at a time, as a node without lookahead)",
         &o->credits},
        {"connect-timeout", 0, CLI_INT, "DROVER_CONNECT_TIMEOUT", "5000", 1,
         INT_MAX, "MS", "how long to wait for the broker to answer",
         &o->connect_timeout},
        {"json", 0, CLI_FLAG, "DROVER_JSON", NULL, 0, 0, NULL,
         "print one JSON object instead of the table", &o->json},
        {"quiet", 'q', CLI_FLAG, "DROVER_QUIET", NULL, 0, 0, NULL,
         "no progress lines on stderr", &o->quiet},
    };
    cli_command_t command = {
        "bench", "drover bench [OPTIONS]",
        "Measures a Drover cluster, like redis-benchmark: a private local "
        "cluster, as `drover map -j N` runs one (the broker with its sink in "
        "memory, as a thread of this process reached over inproc; one node "
        "with --jobs children over ipc) or, with --connect, a running one. "
        "Prints a table "
        "(or --json) with the machine, the settings and the results. Each "
        "measurement follows a warm-up; times are CLOCK_MONOTONIC; every "
        "result is checked.\n\n"
        "scenarios:\n"
        "  throughput  --tasks echo tasks of 16 bytes, each its own task (id, "
        "lease, result), through the map (batched submits, --window in "
        "flight): tasks/s\n"
        "  chunked     --items echo inputs of 16 bytes through a map with "
        "--chunksize (auto: about 10 ms of work per task), as Pool.map's "
        "chunksize: items/s\n"
        "  latency     one echo task at a time, submit to result at the "
        "client: p50, p90, p99, p99.9 in microseconds\n"
        "  dispatch    --dispatch-tasks sleep tasks of --sleep-ms on "
        "--dispatch-children children (a local cluster of their own): "
        "efficiency = tasks x sleep / children / measured time\n"
        "  payload     echo throughput at each of --payload-sizes: tasks/s "
        "and MB/s (10^6 octets of payload sent per second)\n"
        "  durable     the throughput workload on local clusters whose "
        "broker runs in memory, or with --data (a temporary directory) and "
        "--fsync never, batch or always (local only)\n"
        "  memory      the RSS growth of a local broker holding --queued "
        "16-byte tasks (per task), and the peak RSS of a `drover map -j "
        "N --chunksize auto` process (with its local broker and sink) over "
        "--map-lines lines (local only)\n"
        "  ceiling     the same flow through plain ZeroMQ, no Drover logic, "
        "with one worker process per child, over ipc and tcp loopback: a "
        "PUSH/PULL pipeline and a credit-based ROUTER load balancer "
        "(one credit per worker): messages/s. Every Drover throughput is "
        "also given as a fraction of the router-credit ceiling on its "
        "transport and payload size ('of ceiling')\n\n"
        "The local clusters ignore DROVER_DATA. Exit status: 0, 1 when a "
        "measurement failed, 2 for a usage error.",
        options, sizeof options / sizeof options[0]};
    int rc = cli_parse_no_args (&command, argc, argv);
    if (rc != CLI_CONTINUE)
        return rc;
    rc = s_check_options (self, &command);
    if (rc)
        return rc;
    if (o->messages == 0)
        o->messages = o->tasks > 20000000 ? 20000000 : o->tasks;
    return CLI_CONTINUE;
}

//  --------------------------------------------------------------------------
//  Helpers

static void s_progress (s_bench_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static void
s_progress (s_bench_t *self, const char *format, ...)
{
    if (self->options.quiet)
        return;
    va_list args;
    va_start (args, format);
    fprintf (stderr, "drover bench: ");
    vfprintf (stderr, format, args);
    fprintf (stderr, "\n");
    va_end (args);
}

static void s_note (s_bench_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static void
s_note (s_bench_t *self, const char *format, ...)
{
    if (self->note_count == MAX_NOTES)
        return;
    va_list args;
    va_start (args, format);
    vsnprintf (self->notes[self->note_count++], sizeof self->notes[0], format,
               args);
    va_end (args);
}

static int s_fail (s_bench_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static int
s_fail (s_bench_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->error, sizeof self->error, format, args);
    va_end (args);
    return -1;
}

static s_row_t *
s_add_row (s_bench_t *self, s_scenario_t scenario)
{
    assert (self->row_count < MAX_ROWS);
    s_row_t *row = &self->rows[self->row_count++];
    *row = (s_row_t){.scenario = scenario, .ceiling_fraction = -1};
    return row;
}

//  Fills in a row's count, time and rate.
static void
s_set_rate (s_row_t *row, uint64_t count, double seconds)
{
    row->count = count;
    row->seconds = seconds;
    row->per_second = seconds > 0 ? (double)count / seconds : 0;
}

//  "16 B", "1 KiB", "64 KiB", "1 MiB", "1536 B".
static const char *
s_size_text (size_t size, char *text, size_t text_size)
{
    if (size >= 1024 * 1024 && size % (1024 * 1024) == 0)
        snprintf (text, text_size, "%zu MiB", size / (1024 * 1024));
    else if (size >= 1024 && size % 1024 == 0)
        snprintf (text, text_size, "%zu KiB", size / 1024);
    else
        snprintf (text, text_size, "%zu B", size);
    return text;
}

//  Warm-up tasks before measuring count: a tenth, 10 to WARMUP_MAX.
static size_t
s_warmup_tasks (size_t count)
{
    size_t warmup = count / 10;
    if (warmup < 10)
        warmup = 10;
    return warmup > WARMUP_MAX ? WARMUP_MAX : warmup;
}

//  Tasks (or messages) per payload size: count, capped by --payload-mb.
static size_t
s_tasks_for_size (s_bench_t *self, size_t count, size_t size)
{
    size_t cap =
        (size_t)((double)self->options.payload_mb * MIB / (double)size);
    if (cap < 1)
        cap = 1;
    return count < cap ? count : cap;
}

//  The transport of an endpoint: "ipc", "tcp"... (static text).
static const char *
s_transport_of (const char *endpoint)
{
    const char *known[] = {"ipc", "tcp", "inproc", "pgm", "epgm", "vmci"};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strncmp (endpoint, known[i], strlen (known[i]))
            && !strncmp (endpoint + strlen (known[i]), "://", 3))
            return known[i];
    return "?";
}

//  --------------------------------------------------------------------------
//  Clusters

//  A local cluster with jobs children, or a connection to --connect. The
//  local broker runs as a thread of this process, or (broker_process, and
//  always with broker_args) as a process of its own. NULL with
//  self->error set.
static bench_drover_t *
s_cluster (s_bench_t *self, int jobs, bool broker_process,
           const char *const *broker_args, size_t broker_arg_count)
{
    bench_drover_config_t config = {
        .endpoint = self->local ? NULL : self->options.connect,
        .exe = self->exe,
        .jobs = jobs,
        .broker_process = broker_process || broker_args,
        .broker_args = broker_args,
        .broker_arg_count = broker_arg_count,
        .timeout_ms = (int)self->options.connect_timeout,
        .stop = &cli_interrupted};
    bench_drover_t *drover =
        bench_drover_new (&config, self->error, sizeof self->error);
    if (drover && !self->endpoint) {
        self->endpoint = strdup (bench_drover_endpoint (drover));
        assert (self->endpoint);
    }
    return drover;
}

//  The cluster of the main scenarios: started or connected once.
static int
s_main_cluster (s_bench_t *self)
{
    if (self->drover)
        return 0;
    if (self->local)
        s_progress (self, "starting a local cluster with %ld children",
                    self->options.jobs);
    self->drover = s_cluster (self, (int)self->options.jobs, false, NULL, 0);
    return self->drover ? 0 : -1;
}

//  Runs tasks (after a warm-up) through the map; returns 0 or -1.
static int
s_measure_map (s_bench_t *self, bench_drover_t *drover, const char *handler,
               const void *payload, size_t size, size_t tasks,
               uint32_t chunksize, double *seconds)
{
    size_t window = (size_t)self->options.window;
    size_t most = WINDOW_BYTES / size;
    if (window > most)
        window = most < 4 ? 4 : most;
    bench_load_t warm = {handler, payload,  size, s_warmup_tasks (tasks),
                         window,  chunksize};
    bench_load_t load = {handler, payload, size, tasks, window, chunksize};
    double ignored;
    if (bench_drover_map (drover, &warm, &ignored)
        || bench_drover_map (drover, &load, seconds))
        return s_fail (self, "%s", bench_drover_reason (drover));
    return 0;
}

//  --------------------------------------------------------------------------
//  The Drover scenarios

//  An echo workload of count tasks of size octets; adds its row.
static int
s_echo_row (s_bench_t *self, bench_drover_t *drover, s_scenario_t scenario,
            size_t size, size_t count, const char *fsync)
{
    char *payload = (char *)malloc (size);
    if (!payload)
        return s_fail (self, "out of memory");
    for (size_t i = 0; i < size; i++)
        payload[i] = (char)('a' + i % 26);
    double seconds;
    uint32_t chunksize = 0;
    if (scenario == S_CHUNKED)
        chunksize = self->options.chunksize == CLI_AUTO
                        ? DROVER_MAP_CHUNK_AUTO
                        : (uint32_t)self->options.chunksize;
    int rc = s_measure_map (self, drover, "echo", payload, size, count,
                            chunksize, &seconds);
    free (payload);
    if (rc)
        return rc;
    s_row_t *row = s_add_row (self, scenario);
    row->transport = fsync ? "ipc" : self->transport;
    row->payload = size;
    row->fsync = fsync;
    if (scenario == S_CHUNKED)
        row->chunksize = self->chunksize;
    s_set_rate (row, count, seconds);
    return 0;
}

static int
s_throughput (s_bench_t *self)
{
    s_progress (self, "throughput: %ld echo tasks of 16 bytes",
                self->options.tasks);
    return s_echo_row (self, self->drover, S_THROUGHPUT, 16,
                       (size_t)self->options.tasks, NULL);
}

static int
s_chunked (s_bench_t *self)
{
    s_progress (self, "chunked: %ld echo inputs of 16 bytes, --chunksize %s",
                self->options.items, self->chunksize);
    return s_echo_row (self, self->drover, S_CHUNKED, 16,
                       (size_t)self->options.items, NULL);
}

static int
s_compare_double (const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

//  The nearest-rank percentile p (0..1) of count sorted samples.
static double
s_percentile (const double *sorted, size_t count, double p)
{
    size_t rank = (size_t)ceil (p * (double)count);
    return sorted[rank > 0 ? rank - 1 : 0];
}

static int
s_latency (s_bench_t *self)
{
    size_t count = (size_t)self->options.samples;
    s_progress (self, "latency: %ld + %zu round trips", self->options.warmup,
                count);
    double *samples = (double *)malloc (count * sizeof (double));
    if (!samples)
        return s_fail (self, "out of memory");
    if (bench_drover_latency (self->drover, (size_t)self->options.warmup, count,
                              samples)) {
        free (samples);
        return s_fail (self, "%s", bench_drover_reason (self->drover));
    }
    qsort (samples, count, sizeof (double), s_compare_double);
    s_row_t *row = s_add_row (self, S_LATENCY);
    row->count = count;
    const double ranks[4] = {0.50, 0.90, 0.99, 0.999};
    for (size_t i = 0; i < 4; i++)
        row->percentiles[i] = s_percentile (samples, count, ranks[i]);
    free (samples);
    return 0;
}

static int
s_payload (s_bench_t *self)
{
    for (size_t i = 0; i < self->size_count; i++) {
        size_t size = self->sizes[i];
        if (size > bench_drover_max_payload (self->drover)) {
            s_note (self, "payload: %zu octets is over the cluster's limit",
                    size);
            continue;
        }
        size_t tasks =
            s_tasks_for_size (self, (size_t)self->options.tasks, size);
        char text[32];
        s_progress (self, "payload: %zu echo tasks of %s", tasks,
                    s_size_text (size, text, sizeof text));
        if (s_echo_row (self, self->drover, S_PAYLOAD, size, tasks, NULL))
            return -1;
    }
    return 0;
}

//  What a sleep of msecs takes here, in microseconds, as the sleep handler
//  sleeps (an absolute deadline, the least timer slack): the floor that
//  the kernel's timers put under the dispatch workload.
static double
s_sleep_floor_us (long msecs)
{
    enum { ROUNDS = 50 };
    int slack = prctl (PR_GET_TIMERSLACK, 0, 0, 0, 0);
    prctl (PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    struct timespec start, deadline, end;
    clock_gettime (CLOCK_MONOTONIC, &start);
    for (int i = 0; i < ROUNDS; i++) {
        clock_gettime (CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += msecs / 1000;
        deadline.tv_nsec += (msecs % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL)
               == EINTR)
            ;
    }
    clock_gettime (CLOCK_MONOTONIC, &end);
    if (slack > 0)
        prctl (PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
    return ((double)(end.tv_sec - start.tv_sec) * 1e6
            + (double)(end.tv_nsec - start.tv_nsec) / 1e3)
           / ROUNDS;
}

//  Dispatch on drover, which has children children.
static int
s_dispatch_on (s_bench_t *self, bench_drover_t *drover, long children)
{
    char payload[24];
    snprintf (payload, sizeof payload, "%ld", self->options.sleep_ms);
    size_t tasks = (size_t)self->options.dispatch_tasks;
    bench_load_t warm = {"sleep",
                         payload,
                         strlen (payload),
                         (size_t)children * 4,
                         (size_t)self->options.window,
                         0};
    bench_load_t load = {
        "sleep", payload, strlen (payload), tasks, (size_t)self->options.window,
        0};
    double seconds, ignored;
    if (bench_drover_map (drover, &warm, &ignored)
        || bench_drover_map (drover, &load, &seconds))
        return s_fail (self, "%s", bench_drover_reason (drover));
    s_row_t *row = s_add_row (self, S_DISPATCH);
    s_set_rate (row, tasks, seconds);
    row->children = children;
    row->sleep_ms = self->options.sleep_ms;
    row->ideal_seconds = (double)tasks * (double)self->options.sleep_ms / 1000.0
                         / (double)children;
    row->sleep_us = s_sleep_floor_us (self->options.sleep_ms);
    return 0;
}

static int
s_dispatch (s_bench_t *self)
{
    if (!self->local) {
        s_note (self,
                "dispatch: ran on the %ld children of the remote cluster, "
                "not --dispatch-children",
                self->children);
        s_progress (self, "dispatch: %ld sleep tasks on %ld children",
                    self->options.dispatch_tasks, self->children);
        return s_dispatch_on (self, self->drover, self->children);
    }
    long children = self->options.dispatch_children;
    s_progress (self,
                "dispatch: %ld sleep tasks on a local cluster with %ld "
                "children",
                self->options.dispatch_tasks, children);
    bench_drover_t *drover = s_cluster (self, (int)children, false, NULL, 0);
    if (!drover)
        return -1;
    int rc = s_dispatch_on (self, drover, children);
    bench_drover_destroy (&drover);
    return rc;
}

//  One durable run: a local cluster whose broker runs in mode.
static int
s_durable_mode (s_bench_t *self, const char *mode)
{
    bool memory = !strcmp (mode, "memory");
    char *dir = NULL;
    if (!memory
        && !(dir = bench_drover_make_dir (self->error, sizeof self->error)))
        return -1;
    const char *args[] = {"--data", dir, "--fsync", mode};
    s_progress (self, "durable: %ld echo tasks, broker %s%s%s",
                self->options.tasks, memory ? "in memory" : "--fsync ",
                memory ? "" : mode, memory ? "" : " --data TMPDIR");
    //  The broker is a process of its own in every mode, so that the modes
    //  differ in nothing else
    bench_drover_t *drover = s_cluster (self, (int)self->options.jobs, true,
                                        memory ? NULL : args, memory ? 0 : 4);
    int rc = drover ? s_echo_row (self, drover, S_DURABLE, 16,
                                  (size_t)self->options.tasks, mode)
                    : -1;
    bench_drover_destroy (&drover);
    bench_drover_remove_dir (dir);
    free (dir);
    return rc;
}

//  Memory: a broker holding --queued tasks, and a map process over
//  --map-lines lines; each on a local cluster of its own.
static int
s_memory (s_bench_t *self)
{
    if (!self->local) {
        s_note (self, "memory: skipped: it reads the local broker's /proc "
                      "(run without --connect)");
        return 0;
    }
    char max_queued[32];
    snprintf (max_queued, sizeof max_queued, "%ld",
              self->options.queued + 1000);
    const char *args[] = {"--max-queued", max_queued};
    s_progress (self, "memory: %ld queued tasks of 16 bytes in the broker",
                self->options.queued);
    bench_drover_t *drover =
        s_cluster (self, (int)self->options.jobs, true, args, 2);
    if (!drover)
        return -1;
    long before = bench_drover_broker_rss_kb (drover);
    int rc = bench_drover_fill (drover, (size_t)self->options.queued, 16);
    long after = bench_drover_broker_rss_kb (drover);
    if (rc == 0 && (before < 0 || after < 0))
        rc = s_fail (self, "cannot read the broker's memory from /proc");
    else if (rc)
        s_fail (self, "%s", bench_drover_reason (drover));
    if (rc == 0) {
        s_row_t *row = s_add_row (self, S_MEMORY);
        row->what = "broker";
        row->count = (uint64_t)self->options.queued;
        row->rss_kb = after - before;
        row->octets_per_task =
            (double)(after - before) * 1024.0 / (double)self->options.queued;
    }
    bench_drover_destroy (&drover);
    if (rc)
        return rc;
    s_progress (self,
                "memory: drover map -j %ld --chunksize auto over %ld lines "
                "(its broker and sink in its process)",
                self->options.jobs, self->options.map_lines);
    bench_map_process_t map = {.exe = self->exe,
                               .jobs = (int)self->options.jobs,
                               .lines = (size_t)self->options.map_lines,
                               .chunksize = "auto",
                               .stop = &cli_interrupted};
    long peak_kb = 0;
    double seconds = 0;
    rc = bench_drover_map_process (&map, &peak_kb, &seconds, self->error,
                                   sizeof self->error);
    if (rc == 0) {
        s_row_t *row = s_add_row (self, S_MEMORY);
        row->what = "map";
        row->rss_kb = peak_kb;
        s_set_rate (row, (uint64_t)self->options.map_lines, seconds);
    }
    return rc;
}

static int
s_durable (s_bench_t *self)
{
    if (!self->local) {
        s_note (self, "durable: skipped: it starts local clusters (run "
                      "without --connect)");
        return 0;
    }
    for (size_t i = 0; i < self->mode_count; i++)
        if (s_durable_mode (self, self->modes[i]))
            return -1;
    return 0;
}

//  --------------------------------------------------------------------------
//  The ceiling

static int
s_ceiling_row (s_bench_t *self, bench_pattern_t pattern, const char *transport,
               size_t size, size_t messages)
{
    char text[32];
    s_progress (self, "ceiling: %s over %s, %zu messages of %s",
                bench_zmq_pattern_name (pattern), transport, messages,
                s_size_text (size, text, sizeof text));
    bench_zmq_config_t config = {
        .pattern = pattern,
        .tcp = !strcmp (transport, "tcp"),
        .payload = size,
        .messages = messages,
        .warmup = s_warmup_tasks (messages),
        .workers = (int)(self->children > 0 ? self->children : 1),
        .credits = (int)self->options.credits};
    double seconds;
    char error[512];
    if (bench_zmq_run (&config, &cli_interrupted, &seconds, error,
                       sizeof error))
        return s_fail (self, "%s over %s: %s", bench_zmq_pattern_name (pattern),
                       transport, error);
    s_row_t *row = s_add_row (self, S_CEILING);
    row->pattern = bench_zmq_pattern_name (pattern);
    row->transport = transport;
    row->payload = size;
    s_set_rate (row, messages, seconds);
    return 0;
}

static int
s_ceiling (s_bench_t *self)
{
    size_t messages = (size_t)self->options.messages;
    const bench_pattern_t patterns[] = {BENCH_PUSH_PULL, BENCH_ROUTER_CREDIT};
    const char *transports[] = {"ipc", "tcp"};
    for (size_t p = 0; p < 2; p++)
        for (size_t t = 0; t < 2; t++)
            if (s_ceiling_row (self, patterns[p], transports[t], 16,
                               p ? messages : 50 * messages))
                return -1;
    //  The ceiling of each payload size, on Drover's transport
    bool known =
        !strcmp (self->transport, "ipc") || !strcmp (self->transport, "tcp");
    for (size_t i = 0;
         known && self->selected[S_PAYLOAD] && i < self->size_count; i++)
        if (self->sizes[i] != 16
            && s_ceiling_row (
                self, BENCH_ROUTER_CREDIT, self->transport, self->sizes[i],
                s_tasks_for_size (self, messages, self->sizes[i])))
            return -1;
    return 0;
}

//  Sets each Drover throughput's fraction of the router-credit ceiling of
//  its transport and payload size.
static void
s_ceiling_fractions (s_bench_t *self)
{
    for (size_t i = 0; i < self->row_count; i++) {
        s_row_t *row = &self->rows[i];
        if (row->scenario != S_THROUGHPUT && row->scenario != S_PAYLOAD
            && row->scenario != S_DURABLE)
            continue;
        for (size_t j = 0; j < self->row_count; j++) {
            s_row_t *ceiling = &self->rows[j];
            if (ceiling->scenario == S_CEILING
                && !strcmp (ceiling->pattern, "router-credit")
                && !strcmp (ceiling->transport, row->transport)
                && ceiling->payload == row->payload && ceiling->per_second > 0)
                row->ceiling_fraction = row->per_second / ceiling->per_second;
        }
    }
}

//  --------------------------------------------------------------------------
//  Running it all

//  The scenarios on the main cluster, then those with clusters of their
//  own (one cluster at a time, so that they do not compete).
static int
s_run_drover (s_bench_t *self)
{
    typedef int (s_fn_t) (s_bench_t *);
    static const struct {
        s_scenario_t scenario;
        s_fn_t *run;
    } main_scenarios[] = {
        {S_THROUGHPUT, s_throughput},
        {S_CHUNKED, s_chunked},
        {S_LATENCY, s_latency},
        {S_PAYLOAD, s_payload},
    };
    for (size_t i = 0; i < sizeof main_scenarios / sizeof main_scenarios[0];
         i++) {
        if (!self->selected[main_scenarios[i].scenario])
            continue;
        self->current = s_scenario_names[main_scenarios[i].scenario];
        if (s_main_cluster (self) || main_scenarios[i].run (self))
            return -1;
    }
    self->current = s_scenario_names[S_DISPATCH];
    if (self->selected[S_DISPATCH]) {
        if (self->local)
            bench_drover_destroy (&self->drover);
        else if (s_main_cluster (self))
            return -1;
        if (s_dispatch (self))
            return -1;
    }
    if (self->local)
        bench_drover_destroy (&self->drover);
    self->current = s_scenario_names[S_DURABLE];
    if (self->selected[S_DURABLE] && s_durable (self))
        return -1;
    self->current = s_scenario_names[S_MEMORY];
    return self->selected[S_MEMORY] ? s_memory (self) : 0;
}

static int
s_run (s_bench_t *self)
{
    if (self->local) {
        ssize_t size =
            readlink ("/proc/self/exe", self->exe, sizeof self->exe - 1);
        if (size <= 0)
            return s_fail (self, "cannot find my own executable: %s",
                           strerror (errno));
        self->exe[size] = 0;
        unsetenv ("DROVER_DATA"); //  our local clusters run in memory
        self->children = self->options.jobs;
        self->transport = "ipc";
    }
    else {
        //  Connect first: say at once when nobody answers
        if (s_main_cluster (self)
            || bench_drover_children (self->drover, &self->children))
            return self->error[0] ? -1
                                  : s_fail (self, "%s",
                                            bench_drover_reason (self->drover));
        self->transport = s_transport_of (self->options.connect);
        if (self->children == 0)
            return s_fail (self, "the cluster at %s has no worker node",
                           self->options.connect);
        if (self->selected[S_CEILING])
            s_note (self,
                    "ceiling: measured on this machine, with one worker "
                    "process per child of the cluster (%ld)",
                    self->children);
    }
    //  The ceiling first, while no local cluster runs
    self->current = s_scenario_names[S_CEILING];
    if (self->selected[S_CEILING] && s_ceiling (self))
        return -1;
    int rc = s_run_drover (self);
    bench_drover_destroy (&self->drover);
    s_ceiling_fractions (self);
    return rc;
}

//  --------------------------------------------------------------------------
//  Output: JSON

//  A number with decimals, or null when it is not finite or negative.
static void
s_json_number (FILE *out, double value, int decimals)
{
    if (isfinite (value) && value >= 0)
        fprintf (out, "%.*f", decimals, value);
    else
        fputs ("null", out);
}

static void
s_json_key_string (FILE *out, const char *key, const char *value)
{
    fprintf (out, ",\"%s\":", key);
    if (value)
        drover_json_write_string (out, value, strlen (value));
    else
        fputs ("null", out);
}

static void
s_json_key_number (FILE *out, const char *key, double value, int decimals)
{
    fprintf (out, ",\"%s\":", key);
    s_json_number (out, value, decimals);
}

static void
s_json_row (FILE *out, const s_row_t *row)
{
    fprintf (out, "{\"scenario\":\"%s\"", s_scenario_names[row->scenario]);
    if (row->scenario == S_MEMORY) {
        s_json_key_string (out, "what", row->what);
        if (!strcmp (row->what, "broker")) {
            fprintf (out, ",\"queued_tasks\":%" PRIu64 ",\"rss_growth_kb\":%ld",
                     row->count, row->rss_kb);
            s_json_key_number (out, "octets_per_task", row->octets_per_task, 1);
        }
        else {
            fprintf (out, ",\"lines\":%" PRIu64 ",\"peak_rss_kb\":%ld",
                     row->count, row->rss_kb);
            s_json_key_number (out, "seconds", row->seconds, 6);
            s_json_key_number (out, "per_second", row->per_second, 1);
        }
        fputs ("}", out);
        return;
    }
    if (row->scenario == S_LATENCY) {
        const char *keys[4] = {"p50_us", "p90_us", "p99_us", "p999_us"};
        fprintf (out, ",\"samples\":%" PRIu64, row->count);
        for (size_t i = 0; i < 4; i++)
            s_json_key_number (out, keys[i], row->percentiles[i], 1);
        fputs ("}", out);
        return;
    }
    if (row->pattern)
        s_json_key_string (out, "pattern", row->pattern);
    if (row->fsync)
        s_json_key_string (out, "fsync", row->fsync);
    if (row->transport)
        s_json_key_string (out, "transport", row->transport);
    if (row->scenario == S_DISPATCH)
        fprintf (out, ",\"children\":%ld,\"sleep_ms\":%ld", row->children,
                 row->sleep_ms);
    else
        fprintf (out, ",\"payload\":%zu", row->payload);
    fprintf (out, ",\"%s\":%" PRIu64,
             row->scenario == S_CEILING   ? "messages"
             : row->scenario == S_CHUNKED ? "items"
                                          : "tasks",
             row->count);
    s_json_key_number (out, "seconds", row->seconds, 6);
    s_json_key_number (out, "per_second", row->per_second, 1);
    if (row->scenario == S_PAYLOAD)
        s_json_key_number (out, "mb_per_second",
                           row->per_second * (double)row->payload / 1e6, 3);
    if (row->scenario == S_DISPATCH) {
        s_json_key_number (out, "ideal_seconds", row->ideal_seconds, 6);
        s_json_key_number (
            out, "efficiency",
            row->seconds > 0 ? row->ideal_seconds / row->seconds : -1, 4);
        s_json_key_number (out, "sleep_us", row->sleep_us, 1);
    }
    if (row->scenario == S_CHUNKED)
        s_json_key_string (out, "chunksize", row->chunksize);
    if (row->scenario == S_THROUGHPUT || row->scenario == S_PAYLOAD
        || row->scenario == S_DURABLE)
        s_json_key_number (out, "ceiling_fraction", row->ceiling_fraction, 4);
    fputs ("}", out);
}

static void
s_json (s_bench_t *self, const struct utsname *uts, long cores)
{
    FILE *out = stdout;
    char kernel[sizeof uts->sysname + sizeof uts->release + 2];
    snprintf (kernel, sizeof kernel, "%s %s", uts->sysname, uts->release);
    fprintf (out, "{\"tool\":\"drover bench\",\"version\":\"%s\"",
             DROVER_VERSION);
    fprintf (out, ",\"machine\":{\"cores\":%ld", cores);
    s_json_key_string (out, "kernel", kernel);
    s_json_key_string (out, "host", uts->nodename);
    s_json_key_string (out, "arch", uts->machine);
    fprintf (out, "},\"settings\":{\"mode\":\"%s\",\"children\":%ld",
             self->local ? "local" : "remote", self->children);
    s_json_key_string (out, "endpoint", self->endpoint);
    s_json_key_string (out, "transport", self->transport);
    fprintf (out,
             ",\"tasks\":%ld,\"window\":%ld,\"samples\":%ld,\"warmup\":%ld,"
             "\"messages\":%ld,\"credits\":%ld,\"dispatch_children\":%ld}",
             self->options.tasks, self->options.window, self->options.samples,
             self->options.warmup, self->options.messages,
             self->options.credits, self->options.dispatch_children);
    fputs (",\"results\":[", out);
    //  In the order of the scenarios, whatever order they ran in
    size_t written = 0;
    for (int scenario = 0; scenario < S_COUNT; scenario++)
        for (size_t i = 0; i < self->row_count; i++)
            if ((int)self->rows[i].scenario == scenario) {
                fputs (written++ ? ",\n  " : "\n  ", out);
                s_json_row (out, &self->rows[i]);
            }
    fputs ("],\"notes\":[", out);
    for (size_t i = 0; i < self->note_count; i++) {
        if (i)
            fputc (',', out);
        drover_json_write_string (out, self->notes[i], strlen (self->notes[i]));
    }
    fputs ("]}\n", out);
}

//  --------------------------------------------------------------------------
//  Output: the table

//  "12.3%", or "-" when unknown.
static const char *
s_fraction_text (double fraction, char *text, size_t size)
{
    if (fraction < 0)
        snprintf (text, size, "-");
    else
        snprintf (text, size, "%.1f%%", fraction * 100);
    return text;
}

//  Prints the heading of a scenario's section, before its first row.
static void
s_table_heading (s_scenario_t scenario)
{
    static const char *headings[S_COUNT] = {
        "\nthroughput: echo, 16 B, one task per message (own id, lease and "
        "result)\n  transport      tasks    seconds      tasks/s  of ceiling\n",
        "\nchunked: echo, 16 B inputs through a chunked map (inputs share "
        "tasks)\n  chunksize      items    seconds      items/s\n",
        "\nlatency: echo, 16 B, one task at a time, submit to result\n"
        "    samples     p50 us     p90 us     p99 us   p99.9 us\n",
        "\ndispatch: sleep tasks, efficiency = ideal / measured time; the "
        "floor is what one sleep takes here\n"
        "      tasks  children   sleep ms    seconds      ideal  efficiency  "
        "sleep us  of floor\n",
        "\npayload: echo, one task per message; MB = 10^6 octets of payload\n"
        "    payload      tasks    seconds      tasks/s       MB/s  of "
        "ceiling\n",
        "\ndurable: echo, 16 B, broker in memory or with --data TMPDIR "
        "--fsync MODE\n"
        "  fsync          tasks    seconds      tasks/s  of ceiling\n",
        "\nmemory: broker RSS growth per queued 16-byte task; drover map's "
        "peak RSS\n"
        "  what             count     RSS MiB    per task    seconds\n",
        "\nceiling: plain ZeroMQ, no Drover logic\n"
        "  pattern        transport  payload   messages    seconds   "
        "messages/s\n"};
    fputs (headings[scenario], stdout);
}

static void
s_table_row (const s_row_t *row)
{
    char size[32], fraction[32];
    s_size_text (row->payload, size, sizeof size);
    s_fraction_text (row->ceiling_fraction, fraction, sizeof fraction);
    const double *p = row->percentiles;
    switch (row->scenario) {
        case S_THROUGHPUT:
        case S_DURABLE:
            printf ("  %-10s %9" PRIu64 " %10.3f %12.0f %11s\n",
                    row->scenario == S_DURABLE ? row->fsync : row->transport,
                    row->count, row->seconds, row->per_second, fraction);
            break;
        case S_CHUNKED:
            printf ("  %-10s %9" PRIu64 " %10.3f %12.0f\n", row->chunksize,
                    row->count, row->seconds, row->per_second);
            break;
        case S_LATENCY:
            printf ("  %9" PRIu64 " %10.0f %10.0f %10.0f %10.0f\n", row->count,
                    p[0], p[1], p[2], p[3]);
            break;
        case S_DISPATCH: {
            double efficiency =
                row->seconds > 0 ? row->ideal_seconds / row->seconds : 0;
            double floor = row->sleep_us > 0
                               ? (double)row->sleep_ms * 1000.0 / row->sleep_us
                               : 0;
            printf ("  %9" PRIu64 " %9ld %10ld %10.3f %10.3f %11.3f %9.0f "
                    "%9.3f\n",
                    row->count, row->children, row->sleep_ms, row->seconds,
                    row->ideal_seconds, efficiency, row->sleep_us,
                    floor > 0 ? efficiency / floor : 0);
            break;
        }
        case S_MEMORY:
            if (!strcmp (row->what, "broker"))
                printf ("  %-12s %9" PRIu64 " %11.1f %9.0f B %10s\n", "broker",
                        row->count, (double)row->rss_kb / 1024.0,
                        row->octets_per_task, "-");
            else
                printf ("  %-12s %9" PRIu64 " %11.1f %11s %10.3f\n",
                        "drover map", row->count, (double)row->rss_kb / 1024.0,
                        "-", row->seconds);
            break;
        case S_PAYLOAD:
            printf ("  %9s %10" PRIu64 " %10.3f %12.0f %10.1f %11s\n", size,
                    row->count, row->seconds, row->per_second,
                    row->per_second * (double)row->payload / 1e6, fraction);
            break;
        case S_CEILING:
            printf ("  %-14s %-9s %8s %10" PRIu64 " %10.3f %12.0f\n",
                    row->pattern, row->transport, size, row->count,
                    row->seconds, row->per_second);
            break;
        case S_COUNT: break;
    }
}

static void
s_table (s_bench_t *self, const struct utsname *uts, long cores)
{
    printf ("drover bench %s on %s: %ld cores, %s %s %s\n", DROVER_VERSION,
            uts->nodename, cores, uts->sysname, uts->release, uts->machine);
    if (self->local)
        printf ("mode local: private clusters (broker in this process, over "
                "inproc; node over ipc), %ld children (dispatch: %ld)\n",
                self->options.jobs, self->options.dispatch_children);
    else
        printf ("mode remote: %s, %ld children\n", self->options.connect,
                self->children);
    printf ("settings: --tasks %ld --window %ld --samples %ld --warmup %ld "
            "--messages %ld\n",
            self->options.tasks, self->options.window, self->options.samples,
            self->options.warmup, self->options.messages);
    for (int scenario = 0; scenario < S_COUNT; scenario++) {
        bool headed = false;
        for (size_t i = 0; i < self->row_count; i++)
            if ((int)self->rows[i].scenario == scenario) {
                if (!headed)
                    s_table_heading ((s_scenario_t)scenario);
                headed = true;
                s_table_row (&self->rows[i]);
            }
    }
    if (self->selected[S_CEILING])
        printf ("\nceiling: %ld worker processes, router-credit with %ld "
                "credit(s) per worker; 'of ceiling' compares with "
                "router-credit on the same transport and payload size\n",
                self->children, self->options.credits);
    for (size_t i = 0; i < self->note_count; i++)
        printf ("note: %s\n", self->notes[i]);
}

//  --------------------------------------------------------------------------
//  drover bench

int
drover_cmd_bench (int argc, char **argv)
{
    s_bench_t *self = (s_bench_t *)calloc (1, sizeof *self);
    assert (self);
    int rc = s_parse (self, argc, argv);
    if (rc != CLI_CONTINUE) {
        free (self);
        return rc;
    }
    cli_catch_signals ();
    rc = s_run (self);
    if (rc == 0) {
        struct utsname uts;
        if (uname (&uts))
            memset (&uts, 0, sizeof uts);
        long cores = sysconf (_SC_NPROCESSORS_ONLN);
        if (self->options.json)
            s_json (self, &uts, cores);
        else
            s_table (self, &uts, cores);
        rc = fflush (stdout) == EOF || ferror (stdout) ? 1 : 0;
    }
    else {
        if (!cli_interrupted)
            fprintf (stderr, "drover bench: %s%s%s\n",
                     self->current ? self->current : "",
                     self->current ? ": " : "", self->error);
        rc = 1;
    }
    bench_drover_destroy (&self->drover);
    free (self->endpoint);
    free (self);
    return cli_interrupted ? 128 + (int)cli_interrupted : rc;
}
