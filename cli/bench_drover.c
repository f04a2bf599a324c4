/*  bench_drover.c - the Drover workloads of `drover bench`.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "bench_drover.h"
#include "drover_client.h"
#include "drover_cluster.h"
#include "drover_map.h"
#include "local_cluster.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLUSTER_READY_MS 10000 //  wait for a local cluster to listen
#define CLUSTER_STOP_MS  3000  //  wait for it to stop
#define TICK_MS          250   //  look at the cluster and the flags
#define STALL_MS         30000 //  no result this long: give up

struct bench_drover_t {
    drover_cluster_t *cluster; //  a local cluster of processes, or NULL
    local_cluster_t *local;    //  a local cluster with the broker in this
                               //  process, or NULL
    drover_client_t *client;   //  connected to its broker
    char *endpoint;            //  the broker's endpoint
    const volatile sig_atomic_t *stop;
    int timeout_ms;    //  wait for one result at most this long
    char reason[1024]; //  why the last call failed
};

static int s_fail (bench_drover_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static int
s_fail (bench_drover_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->reason, sizeof self->reason, format, args);
    va_end (args);
    return -1;
}

//  Seconds on czmq's monotonic clock.
static double
s_now (void)
{
    return (double)zclock_usecs () / 1e6;
}

//  --------------------------------------------------------------------------
//  The cluster

static int
s_start_local (bench_drover_t *self, const bench_drover_config_t *config)
{
    if (!config->broker_process) {
        local_cluster_config_t local_config = {.exe = config->exe,
                                               .jobs = config->jobs};
        self->local = local_cluster_start (&local_config, CLUSTER_READY_MS,
                                           self->reason, sizeof self->reason);
        return self->local ? 0 : -1;
    }
    self->cluster = drover_cluster_new ();
    if (!self->cluster)
        return s_fail (self, "out of memory");
    drover_cluster_config_t cluster_config = {.exe = config->exe,
                                              .jobs = config->jobs};
    drover_cluster_set_broker_args (self->cluster, config->broker_args,
                                    config->broker_arg_count);
    int rc = drover_cluster_start (self->cluster, &cluster_config);
    if (rc == 0)
        rc = drover_cluster_wait_ready (self->cluster, CLUSTER_READY_MS);
    if (rc)
        return s_fail (self, "cannot start a local cluster: %s",
                       drover_cluster_reason (self->cluster));
    return 0;
}

bench_drover_t *
bench_drover_new (const bench_drover_config_t *config, char *error,
                  size_t error_size)
{
    assert (config && config->stop);
    bench_drover_t *self = (bench_drover_t *)calloc (1, sizeof *self);
    if (!self) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    self->stop = config->stop;
    self->timeout_ms = config->timeout_ms;
    int rc = config->endpoint ? 0 : s_start_local (self, config);
    const char *endpoint = config->endpoint ? config->endpoint
                           : self->local
                               ? local_cluster_endpoint (self->local)
                               : drover_cluster_endpoint (self->cluster);
    if (rc == 0
        && (!(self->client = drover_client_new ())
            || !(self->endpoint = strdup (endpoint))))
        rc = s_fail (self, "out of memory");
    if (rc == 0
        && (self->local ? local_cluster_connect (self->local, self->client,
                                                 config->timeout_ms)
                        : drover_client_connect (self->client, endpoint,
                                                 config->timeout_ms)))
        rc = s_fail (self, "%s", drover_client_reason (self->client));
    if (rc) {
        snprintf (error, error_size, "%s", self->reason);
        bench_drover_destroy (&self);
    }
    return self;
}

void
bench_drover_destroy (bench_drover_t **self_p)
{
    assert (self_p);
    bench_drover_t *self = *self_p;
    if (!self)
        return;
    drover_client_destroy (&self->client);
    if (self->local)
        local_cluster_stop (self->local, CLUSTER_STOP_MS);
    local_cluster_destroy (&self->local);
    if (self->cluster)
        drover_cluster_stop (self->cluster, CLUSTER_STOP_MS);
    drover_cluster_destroy (&self->cluster);
    free (self->endpoint);
    free (self);
    *self_p = NULL;
}

const char *
bench_drover_endpoint (bench_drover_t *self)
{
    assert (self);
    return self->endpoint;
}

uint64_t
bench_drover_max_payload (bench_drover_t *self)
{
    assert (self);
    return drover_client_max_payload (self->client);
}

const char *
bench_drover_reason (bench_drover_t *self)
{
    assert (self);
    return self->reason;
}

int
bench_drover_children (bench_drover_t *self, long *children_p)
{
    assert (self);
    drover_stats_t *stats = NULL;
    if (drover_client_stats (self->client, &stats))
        return s_fail (self, "cannot read the cluster's stats: %s",
                       drover_client_reason (self->client));
    long children = 0;
    for (size_t i = 0; i < stats->node_count; i++)
        children += (long)stats->nodes[i].children;
    drover_stats_destroy (&stats);
    *children_p = children;
    return 0;
}

//  Returns -1 when we should give up waiting: a signal, a local cluster
//  that died, or no result for too long.
static int
s_check (bench_drover_t *self, double last_result)
{
    if (*self->stop)
        return s_fail (self, "interrupted");
    if (self->cluster && drover_cluster_check (self->cluster))
        return s_fail (self, "%s", drover_cluster_reason (self->cluster));
    if (self->local && local_cluster_check (self->local))
        return s_fail (self, "%s", local_cluster_reason (self->local));
    if (s_now () - last_result > STALL_MS / 1000.0)
        return s_fail (self,
                       "no result for %d s: is a node with the built-in "
                       "handlers (echo, sleep) up and connected?",
                       STALL_MS / 1000);
    return 0;
}

//  Checks a result: success, and for echo the payload back.
static int
s_check_result (bench_drover_t *self, const char *handler,
                const drover_result_t *result, size_t payload_size)
{
    if (result->code)
        return s_fail (
            self, "task %llu failed: %s: %s", (unsigned long long)result->id,
            drover_strcode (result->code),
            result->reason ? result->reason : drover_strerror (result->code));
    if (strcmp (handler, "echo") == 0 && result->payload_size != payload_size)
        return s_fail (self, "task %llu: echo gave %zu octets back, not %zu",
                       (unsigned long long)result->id, result->payload_size,
                       payload_size);
    return 0;
}

//  --------------------------------------------------------------------------
//  Throughput: drover_map

typedef struct {
    const bench_load_t *load;
    size_t given; //  inputs handed to the map
} s_input_t;

static int
s_next_input (void *arg, drover_payload_t *input)
{
    s_input_t *self = (s_input_t *)arg;
    if (self->given == self->load->tasks)
        return 0;
    self->given++;
    input->data = self->load->payload;
    input->size = self->load->payload_size;
    return 1;
}

//  Takes every result of the map; returns 0 or -1.
static int
s_drain (bench_drover_t *self, drover_map_t *map, const bench_load_t *load)
{
    //  Progress is looked at once per tick, not per result: the clock is
    //  not free
    double last_result = s_now ();
    size_t done = 0, done_at_tick = 0;
    while (true) {
        drover_result_t *result = NULL;
        int rc = drover_map_next (map, TICK_MS, &result);
        if (rc == DROVER_ETIMEDOUT) {
            if (done != done_at_tick) {
                done_at_tick = done;
                last_result = s_now ();
            }
            if (s_check (self, last_result))
                return -1;
            continue;
        }
        if (rc)
            return s_fail (self, "%s", drover_client_reason (self->client));
        if (!result)
            break;
        rc = s_check_result (self, load->handler, result, load->payload_size);
        drover_result_destroy (&result);
        if (rc)
            return -1;
        done++;
    }
    if (done != load->tasks)
        return s_fail (self, "%zu results for %zu tasks", done, load->tasks);
    return 0;
}

int
bench_drover_map (bench_drover_t *self, const bench_load_t *load,
                  double *seconds_p)
{
    assert (self && load && seconds_p);
    s_input_t input = {load, 0};
    drover_map_options_t options = {.window = load->window,
                                    .chunksize = load->chunksize};
    double start = s_now ();
    drover_map_t *map = drover_map_new (self->client, load->handler, &options,
                                        s_next_input, &input);
    if (!map)
        return s_fail (self, "cannot start a map of %s", load->handler);
    int rc = s_drain (self, map, load);
    *seconds_p = s_now () - start;
    if (rc && !self->cluster && !self->local)
        drover_map_cancel (map, 2000); //  a remote cluster keeps running
    drover_map_destroy (&map);
    return rc;
}

//  --------------------------------------------------------------------------
//  Latency: one task at a time

//  Submits one echo task and waits for its result; returns 0 or -1.
static int
s_round_trip (bench_drover_t *self, const char *payload, size_t size)
{
    uint64_t id;
    if (drover_client_submit (self->client, "echo", payload, size, NULL, &id))
        return s_fail (self, "cannot submit: %s",
                       drover_client_reason (self->client));
    drover_result_t *result = NULL;
    double sent = s_now ();
    int rc;
    while (true) {
        rc = drover_client_wait (self->client, &id, 1, TICK_MS, true, &result);
        if (rc == 0)
            break;
        if (rc != DROVER_ETIMEDOUT)
            return s_fail (self, "cannot wait: %s",
                           drover_client_reason (self->client));
        if (s_check (self, sent))
            return -1;
    }
    rc = s_check_result (self, "echo", result, size);
    drover_result_destroy (&result);
    return rc;
}

int
bench_drover_latency (bench_drover_t *self, size_t warmup, size_t count,
                      double *samples_us)
{
    assert (self && (samples_us || count == 0));
    static const char payload[] = "0123456789abcdef"; //  16 octets
    for (size_t i = 0; i < warmup + count; i++) {
        double start = s_now ();
        if (s_round_trip (self, payload, sizeof payload - 1))
            return -1;
        if (i >= warmup)
            samples_us[i - warmup] = (s_now () - start) * 1e6;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Memory

#define FILL_QUEUE "drover-bench-idle" //  a queue no node serves
#define FILL_BATCH 4096                //  tasks per submit call

int
bench_drover_fill (bench_drover_t *self, size_t tasks, size_t payload_size)
{
    assert (self);
    char *payload = (char *)malloc (payload_size ? payload_size : 1);
    drover_payload_t *payloads =
        (drover_payload_t *)calloc (FILL_BATCH, sizeof *payloads);
    uint64_t *ids = (uint64_t *)calloc (FILL_BATCH, sizeof *ids);
    int rc = payload && payloads && ids ? 0 : s_fail (self, "out of memory");
    if (rc == 0)
        memset (payload, 'q', payload_size);
    for (size_t i = 0; i < FILL_BATCH && rc == 0; i++)
        payloads[i] = (drover_payload_t){payload, payload_size};
    drover_task_options_t options = {.queue = FILL_QUEUE};
    for (size_t done = 0; done < tasks && rc == 0;) {
        size_t count = tasks - done < FILL_BATCH ? tasks - done : FILL_BATCH;
        if (*self->stop)
            rc = s_fail (self, "interrupted");
        else if (drover_client_submit_batch (self->client, "echo", payloads,
                                             count, &options, ids))
            rc = s_fail (self, "cannot queue task %zu: %s", done,
                         drover_client_reason (self->client));
        done += count;
    }
    free (payload);
    free (payloads);
    free (ids);
    return rc;
}

long
bench_drover_broker_rss_kb (bench_drover_t *self)
{
    assert (self);
    if (!self->cluster)
        return -1;
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/status",
              (int)drover_cluster_pid (self->cluster, 0));
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    long rss = -1;
    char line[256];
    while (fgets (line, sizeof line, file))
        if (sscanf (line, "VmRSS: %ld kB", &rss) == 1)
            break;
    fclose (file);
    return rss;
}

static int s_error (char *error, size_t error_size, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));
static int
s_error (char *error, size_t error_size, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (error, error_size, format, args);
    va_end (args);
    return -1;
}

//  Writes what is left of the numbered lines to fd without blocking;
//  returns false on a write error other than EAGAIN.
static bool
s_feed (int fd, size_t lines, size_t *next, char *pending, size_t *pending_at,
        size_t *pending_size)
{
    while (true) {
        if (*pending_at == *pending_size) {
            if (*next == lines)
                return true;
            //  A buffer of whole lines
            *pending_size = 0;
            while (*next < lines && *pending_size < 60000)
                *pending_size += (size_t)sprintf (pending + *pending_size,
                                                  "%zu\n", (*next)++);
            *pending_at = 0;
        }
        ssize_t wrote =
            write (fd, pending + *pending_at, *pending_size - *pending_at);
        if (wrote < 0)
            return errno == EAGAIN || errno == EINTR;
        *pending_at += (size_t)wrote;
    }
}

int
bench_drover_map_process (const bench_map_process_t *map, long *peak_kb,
                          double *seconds_p, char *error, size_t error_size)
{
    assert (map && map->exe && map->chunksize && map->stop && peak_kb
            && seconds_p);
    char jobs[16];
    snprintf (jobs, sizeof jobs, "%d", map->jobs);
    int in[2], out[2];
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC))
        return s_error (error, error_size, "cannot make a pipe: %s",
                        strerror (errno));
    double start = s_now ();
    pid_t pid = fork ();
    if (pid == 0) {
        //  Our environment has no DROVER_CONNECT (else we measure a running
        //  cluster, and never come here): it starts its own local cluster
        dup2 (in[0], STDIN_FILENO);
        dup2 (out[1], STDOUT_FILENO);
        execl (map->exe, map->exe, "map", "-j", jobs, "--chunksize",
               map->chunksize, "--quiet", "echo", (char *)NULL);
        _exit (127);
    }
    close (in[0]);
    close (out[1]);
    if (pid < 0) {
        close (in[1]);
        close (out[0]);
        return s_error (error, error_size, "cannot fork: %s", strerror (errno));
    }
    fcntl (in[1], F_SETFL, O_NONBLOCK);
    char *pending = (char *)malloc (65536);
    char buffer[65536];
    size_t next = 0, pending_at = 0, pending_size = 0, received = 0;
    int rc = pending ? 0 : s_error (error, error_size, "out of memory");
    bool feeding = true;
    while (rc == 0) {
        if (feeding
            && !s_feed (in[1], map->lines, &next, pending, &pending_at,
                        &pending_size))
            rc = s_error (error, error_size, "cannot write to drover map: %s",
                          strerror (errno));
        if (feeding && next == map->lines && pending_at == pending_size) {
            close (in[1]);
            feeding = false;
        }
        struct pollfd fds[2] = {{out[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
        if (poll (fds, feeding ? 2 : 1, TICK_MS) < 0 && errno != EINTR)
            rc = s_error (error, error_size, "poll: %s", strerror (errno));
        if (*map->stop)
            rc = s_error (error, error_size, "interrupted");
        if (rc || !(fds[0].revents & (POLLIN | POLLHUP)))
            continue;
        ssize_t got = read (out[0], buffer, sizeof buffer);
        if (got <= 0)
            break;
        for (ssize_t i = 0; i < got; i++)
            received += buffer[i] == '\n';
    }
    free (pending);
    if (feeding)
        close (in[1]);
    close (out[0]);
    if (rc)
        kill (pid, SIGTERM);
    int status = 0;
    struct rusage usage;
    memset (&usage, 0, sizeof usage);
    while (wait4 (pid, &status, 0, &usage) < 0 && errno == EINTR)
        ;
    *seconds_p = s_now () - start;
    *peak_kb = usage.ru_maxrss;
    if (rc == 0 && (!WIFEXITED (status) || WEXITSTATUS (status)))
        rc = s_error (error, error_size, "drover map ended with status %d",
                      WIFEXITED (status) ? WEXITSTATUS (status) : -1);
    if (rc == 0 && received != map->lines)
        rc = s_error (error, error_size,
                      "drover map printed %zu lines for %zu inputs", received,
                      map->lines);
    return rc;
}

//  --------------------------------------------------------------------------
//  Directories for durable brokers

char *
bench_drover_make_dir (char *error, size_t error_size)
{
    const char *base = getenv ("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t size = strlen (base) + 32;
    char *dir = (char *)malloc (size);
    if (!dir) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    snprintf (dir, size, "%s/drover-bench-data-XXXXXX", base);
    if (!mkdtemp (dir)) {
        snprintf (error, error_size,
                  "cannot make a directory in %s: %s; set TMPDIR to a "
                  "writable directory",
                  base, strerror (errno));
        free (dir);
        return NULL;
    }
    return dir;
}

static int
s_remove_entry (const char *path, const struct stat *info, int flag,
                struct FTW *ftw)
{
    (void)info;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir (path);
    else
        unlink (path);
    return 0;
}

void
bench_drover_remove_dir (const char *path)
{
    if (path)
        nftw (path, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
