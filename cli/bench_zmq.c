/*  bench_zmq.c - the plain-ZeroMQ ceiling of `drover bench`.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "bench_zmq.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#define POLL_MS     100   //  how often blocked sockets look at the flags
#define STALL_MS    10000 //  no message this long: something broke
#define MAX_WORKERS 1024

//  One run: the sockets of the producer (or router) and the collector,
//  the worker processes, and the thread that feeds them.
typedef struct {
    const bench_zmq_config_t *config;
    void *ctx;                         //  our context (the workers have theirs)
    void *out;                         //  PUSH or ROUTER: to the workers
    void *in;                          //  PULL: from the workers
    void *pipe;                        //  PAIR: phases to the feeder thread
    void *feeder_pipe;                 //  PAIR: the feeder's end
    char out_endpoint[256];            //  where the workers connect for work
    char in_endpoint[256];             //  where they send what they did
    char dir[128];                     //  private ipc directory, or ""
    pid_t *pids;                       //  the workers
    int pid_count;                     //  how many started
    pthread_t feeder;                  //  the producer or router thread
    bool feeder_started;               //  feeder is valid
    atomic_bool abort;                 //  the feeder stops
    char *error;                       //  the caller's error buffer
    size_t error_size;                 //  its size
    const volatile sig_atomic_t *stop; //  the caller's stop flag
} s_run_t;

const char *
bench_zmq_pattern_name (bench_pattern_t pattern)
{
    return pattern == BENCH_PUSH_PULL ? "push-pull" : "router-credit";
}

static int s_fail (s_run_t *self, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));
static int
s_fail (s_run_t *self, const char *format, ...)
{
    if (*self->error)
        return -1; //  the first reason is the one that matters
    va_list args;
    va_start (args, format);
    vsnprintf (self->error, self->error_size, format, args);
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
//  The workers: forked processes with their own context

//  Forwards every message from `from` to `to`, untouched (zero copy); a
//  DEALER sends `credits` credits first and one after each message.
//  Never returns.
static void
s_worker_loop (void *from, void *to, int credits)
{
    bool credit = credits > 0;
    for (int i = 0; i < credits; i++)
        if (zmq_send (from, "C", 1, 0) == -1)
            _exit (1);
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    while (true) {
        if (zmq_msg_recv (&msg, from, 0) == -1
            || zmq_msg_send (&msg, to, 0) == -1)
            _exit (1);
        if (credit && zmq_send (from, "C", 1, 0) == -1)
            _exit (1);
    }
}

//  The worker process: runs until SIGTERM (or its parent's death). It
//  starts with the parent's handlers and SIGTERM, SIGINT and SIGHUP
//  blocked (s_start_workers): a SIGTERM that comes before the default
//  action is back waits, then ends it, instead of only setting the
//  parent's flag in this copy of it.
static void
s_worker_main (const s_run_t *self, const sigset_t *mask)
{
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    struct sigaction dfl;
    memset (&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset (&dfl.sa_mask);
    sigaction (SIGTERM, &dfl, NULL);
    sigaction (SIGINT, &dfl, NULL);
    sigaction (SIGHUP, &dfl, NULL);
    pthread_sigmask (SIG_SETMASK, mask, NULL);
    bool credit = self->config->pattern == BENCH_ROUTER_CREDIT;
    void *ctx = zmq_ctx_new ();
    void *from = ctx ? zmq_socket (ctx, credit ? ZMQ_DEALER : ZMQ_PULL) : NULL;
    void *to = ctx ? zmq_socket (ctx, ZMQ_PUSH) : NULL;
    if (!from || !to || zmq_connect (from, self->out_endpoint)
        || zmq_connect (to, self->in_endpoint))
        _exit (1);
    s_worker_loop (from, to, credit ? self->config->credits : 0);
}

static int
s_start_workers (s_run_t *self)
{
    self->pids =
        (pid_t *)calloc ((size_t)self->config->workers, sizeof (pid_t));
    if (!self->pids)
        return s_fail (self, "out of memory");
    sigset_t stops, mask;
    sigemptyset (&stops);
    sigaddset (&stops, SIGTERM);
    sigaddset (&stops, SIGINT);
    sigaddset (&stops, SIGHUP);
    pthread_sigmask (SIG_BLOCK, &stops, &mask);
    int rc = 0;
    for (int i = 0; i < self->config->workers && rc == 0; i++) {
        pid_t pid = fork ();
        if (pid == 0)
            s_worker_main (self, &mask);
        if (pid == -1)
            rc = s_fail (self, "cannot start a worker process: %s",
                         strerror (errno));
        else
            self->pids[self->pid_count++] = pid;
    }
    pthread_sigmask (SIG_SETMASK, &mask, NULL);
    return rc;
}

//  Returns -1 when a worker has exited.
static int
s_check_workers (s_run_t *self)
{
    for (int i = 0; i < self->pid_count; i++) {
        int status;
        if (self->pids[i] && waitpid (self->pids[i], &status, WNOHANG) > 0) {
            self->pids[i] = 0;
            return s_fail (self, "a worker process exited (status %d)",
                           WIFEXITED (status) ? WEXITSTATUS (status)
                                              : 128 + WTERMSIG (status));
        }
    }
    return 0;
}

static void
s_stop_workers (s_run_t *self)
{
    for (int i = 0; i < self->pid_count; i++)
        if (self->pids[i])
            kill (self->pids[i], SIGTERM);
    for (int i = 0; i < self->pid_count; i++)
        if (self->pids[i])
            while (waitpid (self->pids[i], NULL, 0) == -1 && errno == EINTR)
                ;
    free (self->pids);
    self->pids = NULL;
    self->pid_count = 0;
}

//  --------------------------------------------------------------------------
//  The feeder thread: sends as many messages as each phase says

//  Sends one message to the workers: to whoever is next (PUSH), or to the
//  worker of the next credit (ROUTER). Returns -1 when aborted.
static int
s_feed_one (s_run_t *self, const void *payload)
{
    size_t size = self->config->payload;
    if (self->config->pattern == BENCH_PUSH_PULL) {
        while (zmq_send (self->out, payload, size, 0) == -1)
            if (errno != EAGAIN || atomic_load (&self->abort))
                return -1;
        return 0;
    }
    zmq_msg_t identity, credit;
    zmq_msg_init (&identity);
    zmq_msg_init (&credit);
    while (zmq_msg_recv (&identity, self->out, 0) == -1)
        if (errno != EAGAIN || atomic_load (&self->abort))
            return -1;
    int rc = zmq_msg_recv (&credit, self->out, 0);
    zmq_msg_close (&credit);
    if (rc == -1 || zmq_msg_send (&identity, self->out, ZMQ_SNDMORE) == -1
        || zmq_send (self->out, payload, size, 0) == -1) {
        zmq_msg_close (&identity);
        return -1;
    }
    return 0;
}

static void *
s_feeder (void *arg)
{
    s_run_t *self = (s_run_t *)arg;
    char *payload = (char *)malloc (self->config->payload + 1);
    if (!payload)
        return NULL;
    memset (payload, 'x', self->config->payload);
    uint64_t count;
    while (zmq_recv (self->feeder_pipe, &count, sizeof count, 0)
               == (int)sizeof count
           && count > 0)
        for (uint64_t i = 0; i < count; i++)
            if (s_feed_one (self, payload))
                goto done;
done:
    free (payload);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Setting up and tearing down

static void *
s_socket (s_run_t *self, int type)
{
    void *socket = zmq_socket (self->ctx, type);
    if (!socket) {
        s_fail (self, "cannot make a ZeroMQ socket: %s", zmq_strerror (errno));
        return NULL;
    }
    int linger = 0, timeout = POLL_MS;
    zmq_setsockopt (socket, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (socket, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_setsockopt (socket, ZMQ_SNDTIMEO, &timeout, sizeof timeout);
    return socket;
}

//  Binds socket to the transport; its endpoint goes to endpoint.
static int
s_bind (s_run_t *self, void *socket, const char *name, char *endpoint,
        size_t size)
{
    if (self->config->tcp)
        snprintf (endpoint, size, "tcp://127.0.0.1:*");
    else
        snprintf (endpoint, size, "ipc://%s/%s", self->dir, name);
    if (zmq_bind (socket, endpoint))
        return s_fail (self, "cannot bind %s: %s", endpoint,
                       zmq_strerror (errno));
    return zmq_getsockopt (socket, ZMQ_LAST_ENDPOINT, endpoint, &size);
}

static int
s_open (s_run_t *self)
{
    if (!self->config->tcp) {
        //  ipc paths must fit in sun_path (108 octets)
        const char *base = getenv ("TMPDIR");
        if (!base || !*base || strlen (base) > 60)
            base = "/tmp";
        snprintf (self->dir, sizeof self->dir, "%s/drover-bench-XXXXXX", base);
        if (!mkdtemp (self->dir)) {
            int error = errno;
            s_fail (self, "cannot make a directory in %s: %s", base,
                    strerror (error));
            self->dir[0] = 0;
            return -1;
        }
    }
    self->ctx = zmq_ctx_new ();
    if (!self->ctx)
        return s_fail (self, "cannot make a ZeroMQ context: %s",
                       zmq_strerror (errno));
    bool router = self->config->pattern == BENCH_ROUTER_CREDIT;
    if (!(self->out = s_socket (self, router ? ZMQ_ROUTER : ZMQ_PUSH))
        || !(self->in = s_socket (self, ZMQ_PULL))
        || !(self->pipe = s_socket (self, ZMQ_PAIR))
        || !(self->feeder_pipe = s_socket (self, ZMQ_PAIR)))
        return -1;
    int forever = -1;
    zmq_setsockopt (self->feeder_pipe, ZMQ_RCVTIMEO, &forever, sizeof forever);
    if (s_bind (self, self->out, "out", self->out_endpoint,
                sizeof self->out_endpoint)
        || s_bind (self, self->in, "in", self->in_endpoint,
                   sizeof self->in_endpoint)
        || zmq_bind (self->pipe, "inproc://bench-feeder")
        || zmq_connect (self->feeder_pipe, "inproc://bench-feeder"))
        return s_fail (self, "cannot set up the sockets: %s",
                       zmq_strerror (errno));
    return 0;
}

static void
s_close (s_run_t *self)
{
    if (self->feeder_started) {
        atomic_store (&self->abort, true);
        uint64_t zero = 0;
        zmq_send (self->pipe, &zero, sizeof zero, 0);
        pthread_join (self->feeder, NULL);
    }
    s_stop_workers (self);
    void *sockets[] = {self->out, self->in, self->pipe, self->feeder_pipe};
    for (size_t i = 0; i < sizeof sockets / sizeof sockets[0]; i++)
        if (sockets[i])
            zmq_close (sockets[i]);
    if (self->ctx)
        zmq_ctx_term (self->ctx);
    if (self->dir[0]) {
        char path[sizeof self->dir + 8];
        snprintf (path, sizeof path, "%s/out", self->dir);
        unlink (path);
        snprintf (path, sizeof path, "%s/in", self->dir);
        unlink (path);
        rmdir (self->dir);
    }
}

//  --------------------------------------------------------------------------
//  Measuring

//  Tells the feeder to send count messages and collects as many.
static int
s_phase (s_run_t *self, uint64_t count)
{
    if (zmq_send (self->pipe, &count, sizeof count, 0) != (int)sizeof count)
        return s_fail (self, "cannot talk to the feeder thread");
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    double last = s_now ();
    for (uint64_t got = 0; got < count;) {
        if (zmq_msg_recv (&msg, self->in, 0) >= 0) {
            got++;
            last = s_now ();
            continue;
        }
        int error = errno;
        if (*self->stop)
            s_fail (self, "interrupted");
        else if (error != EAGAIN)
            s_fail (self, "cannot receive: %s", zmq_strerror (error));
        else if (s_check_workers (self) == 0
                 && s_now () - last > STALL_MS / 1000.0)
            s_fail (self,
                    "no message came back for %d s (%" PRIu64 " of %" PRIu64
                    ")",
                    STALL_MS / 1000, got, count);
        if (*self->error)
            break;
    }
    zmq_msg_close (&msg);
    return *self->error ? -1 : 0;
}

int
bench_zmq_run (const bench_zmq_config_t *config,
               const volatile sig_atomic_t *stop, double *seconds_p,
               char *error, size_t error_size)
{
    assert (config && stop && seconds_p && error && error_size);
    assert (config->workers > 0 && config->workers <= MAX_WORKERS);
    assert (config->pattern == BENCH_PUSH_PULL || config->credits > 0);
    *error = 0;
    s_run_t self = {.config = config,
                    .error = error,
                    .error_size = error_size,
                    .stop = stop};
    atomic_init (&self.abort, false);
    int rc = s_open (&self);
    if (rc == 0)
        rc = s_start_workers (&self);
    if (rc == 0) {
        if (pthread_create (&self.feeder, NULL, s_feeder, &self))
            rc = s_fail (&self, "cannot start a thread");
        else
            self.feeder_started = true;
    }
    if (rc == 0 && config->warmup)
        rc = s_phase (&self, config->warmup);
    double start = s_now ();
    if (rc == 0)
        rc = s_phase (&self, config->messages);
    *seconds_p = s_now () - start;
    s_close (&self);
    return rc;
}
