/*  drover_cluster.c - a private local cluster of drover processes.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_cluster.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLUSTER_PROCESSES 2 //  the broker and the worker
#define CLUSTER_STOP_MS   3000

//  One process of the cluster.
typedef struct {
    const char *role; //  "broker" or "worker", for messages
    pid_t pid;        //  its pid; 0 when it was never started or is reaped
    bool exited;      //  reaped by waitpid
    int status;       //  its wait status, once exited
} s_process_t;

struct drover_cluster_t {
    char *dir;                                //  private directory, or NULL
    char *endpoint;                           //  ipc://DIR/broker
    char *sink_endpoint;                      //  ipc://DIR/sink
    s_process_t processes[CLUSTER_PROCESSES]; //  broker, worker
    const char *const *broker_args;           //  more broker arguments
    size_t broker_arg_count;                  //  how many
    bool caller_runs_broker;                  //  we start the worker only
    char reason[512];                         //  why the last call failed
};

static int s_fail (drover_cluster_t *self, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));
static int
s_fail (drover_cluster_t *self, int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->reason, sizeof self->reason, format, args);
    va_end (args);
    return code;
}

static char *s_printf (const char *format, ...)
    __attribute__ ((format (printf, 1, 2)));
static char *
s_printf (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *text = NULL;
    if (vasprintf (&text, format, args) < 0)
        text = NULL;
    va_end (args);
    return text;
}

static int64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  Sleeps a little; false when a signal came.
static bool
s_nap (void)
{
    struct timespec nap = {0, 5 * 1000 * 1000};
    return nanosleep (&nap, NULL) == 0;
}

drover_cluster_t *
drover_cluster_new (void)
{
    drover_cluster_t *self = (drover_cluster_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->processes[0].role = "broker";
    self->processes[1].role = "worker";
    return self;
}

void
drover_cluster_destroy (drover_cluster_t **self_p)
{
    assert (self_p);
    drover_cluster_t *self = *self_p;
    if (!self)
        return;
    drover_cluster_stop (self, CLUSTER_STOP_MS);
    free (self->dir);
    free (self->endpoint);
    free (self->sink_endpoint);
    free (self);
    *self_p = NULL;
}

//  Removes the directory and what the processes left in it (sockets).
static void
s_remove_dir (const char *path)
{
    DIR *dir = opendir (path);
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir (dir)))
            if (strcmp (entry->d_name, ".") && strcmp (entry->d_name, "..")) {
                char *file = s_printf ("%s/%s", path, entry->d_name);
                if (file)
                    unlink (file);
                free (file);
            }
        closedir (dir);
    }
    rmdir (path);
}

//  Removes the directories of clusters whose client died without cleaning
//  up (SIGKILL): ours (same user), named drover-XXXXXX, whose owner file
//  names a process that no longer exists.
static void
s_sweep_stale (const char *base)
{
    DIR *dir = opendir (base);
    if (!dir)
        return;
    struct dirent *entry;
    while ((entry = readdir (dir))) {
        if (strncmp (entry->d_name, "drover-", 7)
            || strlen (entry->d_name) != 13)
            continue;
        char *path = s_printf ("%s/%s", base, entry->d_name);
        char *owner = s_printf ("%s/%s/owner", base, entry->d_name);
        struct stat info;
        FILE *file = NULL;
        if (path && owner && lstat (path, &info) == 0 && S_ISDIR (info.st_mode)
            && info.st_uid == getuid () && (file = fopen (owner, "r"))) {
            long pid = 0;
            if (fscanf (file, "%ld", &pid) == 1 && pid > 0
                && kill ((pid_t)pid, 0) == -1 && errno == ESRCH)
                s_remove_dir (path);
        }
        if (file)
            fclose (file);
        free (path);
        free (owner);
    }
    closedir (dir);
}

//  Writes our pid into DIR/owner, for s_sweep_stale.
static void
s_write_owner (const char *dir)
{
    char *owner = s_printf ("%s/owner", dir);
    FILE *file = owner ? fopen (owner, "w") : NULL;
    if (file) {
        fprintf (file, "%ld\n", (long)getpid ());
        fclose (file);
    }
    free (owner);
}

//  Runs argv[0] with argv in a child that dies with us. Returns 0, or
//  DROVER_ESYSTEM when fork or exec failed.
static int
s_spawn (drover_cluster_t *self, s_process_t *process, char *const *argv,
         bool verbose)
{
    int devnull = open ("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull == -1)
        return s_fail (self, DROVER_ESYSTEM, "cannot open /dev/null: %s",
                       strerror (errno));
    //  The child reports a failed exec through this pipe; a successful
    //  exec closes it
    int report[2];
    if (pipe2 (report, O_CLOEXEC) == -1) {
        close (devnull);
        return s_fail (self, DROVER_ESYSTEM, "cannot make a pipe: %s",
                       strerror (errno));
    }
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid == 0) {
        //  The child: async-signal-safe calls only until exec
        if (prctl (PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid () != parent)
            _exit (127); //  the parent is gone already
        setpgid (0, 0);
        dup2 (devnull, STDIN_FILENO);
        dup2 (verbose ? STDERR_FILENO : devnull, STDOUT_FILENO);
        struct sigaction dfl;
        memset (&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigemptyset (&dfl.sa_mask);
        int reset[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD};
        for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++)
            sigaction (reset[i], &dfl, NULL);
        sigset_t none;
        sigemptyset (&none);
        sigprocmask (SIG_SETMASK, &none, NULL);
        execv (argv[0], argv);
        int error = errno;
        ssize_t written = write (report[1], &error, sizeof error);
        (void)written;
        _exit (127);
    }
    int error = errno;
    close (devnull);
    close (report[1]);
    if (pid == -1) {
        close (report[0]);
        return s_fail (self, DROVER_ESYSTEM, "cannot start the local %s: %s",
                       process->role, strerror (error));
    }
    *process = (s_process_t){process->role, pid, false, 0};
    int child_error = 0;
    ssize_t got;
    do
        got = read (report[0], &child_error, sizeof child_error);
    while (got == -1 && errno == EINTR);
    close (report[0]);
    if (got == (ssize_t)sizeof child_error) {
        waitpid (pid, &process->status, 0);
        process->exited = true;
        return s_fail (self, DROVER_ESYSTEM, "cannot run %s: %s", argv[0],
                       strerror (child_error));
    }
    return 0;
}

int
drover_cluster_start (drover_cluster_t *self,
                      const drover_cluster_config_t *config)
{
    assert (self);
    assert (config);
    assert (config->exe);
    if (self->dir)
        return s_fail (self, DROVER_EINVAL, "the cluster was started already");
    //  ipc paths must fit in sun_path (108 octets): a long TMPDIR is
    //  passed over for /tmp
    const char *base = getenv ("TMPDIR");
    if (!base || !*base || strlen (base) > 60)
        base = "/tmp";
    s_sweep_stale (base);
    self->dir = s_printf ("%s/drover-XXXXXX", base);
    if (!self->dir)
        return s_fail (self, DROVER_ENOMEM, "out of memory");
    if (!mkdtemp (self->dir)) {
        int error = errno;
        free (self->dir);
        self->dir = NULL;
        return s_fail (self, DROVER_ESYSTEM,
                       "cannot make a directory in %s: %s; set TMPDIR to a "
                       "writable directory",
                       base, strerror (error));
    }
    s_write_owner (self->dir);
    self->endpoint = s_printf ("ipc://%s/broker", self->dir);
    self->sink_endpoint = s_printf ("ipc://%s/sink", self->dir);
    char jobs[16];
    snprintf (jobs, sizeof jobs, "%d", config->jobs);
    size_t extra = config->worker_arg_count > self->broker_arg_count
                       ? config->worker_arg_count
                       : self->broker_arg_count;
    const char **argv = (const char **)calloc (8 + extra, sizeof (char *));
    if (!self->endpoint || !self->sink_endpoint || !argv) {
        free (argv);
        drover_cluster_stop (self, 0);
        return s_fail (self, DROVER_ENOMEM, "out of memory");
    }
    size_t argc = 0;
    argv[argc++] = config->exe;
    argv[argc++] = "broker";
    argv[argc++] = "--listen";
    argv[argc++] = self->endpoint;
    argv[argc++] = "--sink-listen";
    argv[argc++] = self->sink_endpoint;
    if (config->verbose)
        argv[argc++] = "-v";
    for (size_t i = 0; i < self->broker_arg_count; i++)
        argv[argc++] = self->broker_args[i];
    argv[argc] = NULL;
    self->caller_runs_broker = config->caller_runs_broker;
    int rc = self->caller_runs_broker
                 ? 0
                 : s_spawn (self, &self->processes[0], (char *const *)argv,
                            config->verbose);
    if (rc == 0) {
        argc = 0;
        argv[argc++] = config->exe;
        argv[argc++] = "worker";
        argv[argc++] = "--connect";
        argv[argc++] = self->endpoint;
        argv[argc++] = "-j";
        argv[argc++] = jobs;
        if (config->verbose)
            argv[argc++] = "-v";
        for (size_t i = 0; i < config->worker_arg_count; i++)
            argv[argc++] = config->worker_args[i];
        argv[argc] = NULL;
        rc = s_spawn (self, &self->processes[1], (char *const *)argv,
                      config->verbose);
    }
    free (argv);
    if (rc) {
        char reason[sizeof self->reason];
        memcpy (reason, self->reason, sizeof reason);
        drover_cluster_stop (self, 0);
        memcpy (self->reason, reason, sizeof reason);
    }
    return rc;
}

void
drover_cluster_set_broker_args (drover_cluster_t *self, const char *const *args,
                                size_t count)
{
    assert (self);
    assert (args || count == 0);
    self->broker_args = args;
    self->broker_arg_count = count;
}

//  Reaps the process if it exited; true if it has.
static bool
s_reap (s_process_t *process)
{
    if (process->pid == 0 || process->exited)
        return true;
    int status;
    if (waitpid (process->pid, &status, WNOHANG) == process->pid) {
        process->exited = true;
        process->status = status;
    }
    return process->exited;
}

int
drover_cluster_check (drover_cluster_t *self)
{
    assert (self);
    for (size_t i = self->caller_runs_broker ? 1 : 0; i < CLUSTER_PROCESSES;
         i++) {
        s_process_t *process = &self->processes[i];
        if (!s_reap (process))
            continue;
        if (process->pid == 0)
            return s_fail (self, DROVER_ECONNECT,
                           "the local cluster is not running");
        if (WIFSIGNALED (process->status))
            return s_fail (self, DROVER_ECONNECT,
                           "the local %s (pid %d) was killed by signal %d",
                           process->role, (int)process->pid,
                           WTERMSIG (process->status));
        return s_fail (self, DROVER_ECONNECT,
                       "the local %s (pid %d) exited with status %d",
                       process->role, (int)process->pid,
                       WEXITSTATUS (process->status));
    }
    return 0;
}

static bool
s_socket_exists (const char *endpoint)
{
    struct stat info;
    return stat (endpoint + strlen ("ipc://"), &info) == 0;
}

int
drover_cluster_wait_ready (drover_cluster_t *self, int timeout_ms)
{
    assert (self);
    int64_t deadline = s_now_ms () + timeout_ms;
    while (true) {
        int rc = drover_cluster_check (self);
        if (rc)
            return rc;
        if (s_socket_exists (self->endpoint)
            && s_socket_exists (self->sink_endpoint))
            return 0;
        if ((timeout_ms >= 0 && s_now_ms () >= deadline) || !s_nap ())
            return s_fail (self, DROVER_ETIMEDOUT,
                           "the local broker did not listen on %s within "
                           "%d ms",
                           self->endpoint, timeout_ms);
    }
}

const char *
drover_cluster_endpoint (drover_cluster_t *self)
{
    assert (self);
    return self->endpoint;
}

const char *
drover_cluster_sink_endpoint (drover_cluster_t *self)
{
    assert (self);
    return self->sink_endpoint;
}

//  Waits for the process to exit until the deadline.
static bool
s_wait_exit (s_process_t *process, int64_t deadline)
{
    while (!s_reap (process)) {
        if (s_now_ms () >= deadline)
            return false;
        s_nap (); //  a signal only makes us look sooner
    }
    return true;
}

int
drover_cluster_stop (drover_cluster_t *self, int timeout_ms)
{
    assert (self);
    int64_t start = s_now_ms ();
    int64_t deadline = start + (timeout_ms > 0 ? timeout_ms : 0);
    bool killed = false;
    //  The worker first, so it can leave the broker in good order; it gets
    //  half the time, the broker (if ours) the rest
    for (size_t i = CLUSTER_PROCESSES; i-- > 0;) {
        s_process_t *process = &self->processes[i];
        if (process->pid == 0)
            continue;
        if (!s_reap (process)) {
            kill (process->pid, SIGTERM);
            int64_t until = i && self->processes[0].pid
                                ? start + (deadline - start) / 2
                                : deadline;
            if (!s_wait_exit (process, until)) {
                kill (-process->pid, SIGKILL);
                kill (process->pid, SIGKILL);
                while (waitpid (process->pid, &process->status, 0) == -1
                       && errno == EINTR)
                    ;
                process->exited = true;
                killed = true;
            }
        }
        //  Whatever is left of its process group goes too
        kill (-process->pid, SIGKILL);
        process->pid = 0;
    }
    if (self->dir) {
        s_remove_dir (self->dir);
        free (self->dir);
        self->dir = NULL;
    }
    return killed ? s_fail (self, DROVER_ETIMEDOUT,
                            "the local cluster did not stop within %d ms",
                            timeout_ms)
                  : 0;
}

const char *
drover_cluster_reason (drover_cluster_t *self)
{
    assert (self);
    return self->reason;
}

pid_t
drover_cluster_pid (drover_cluster_t *self, size_t index)
{
    assert (self);
    assert (index < CLUSTER_PROCESSES);
    s_process_t *process = &self->processes[index];
    return process->exited ? 0 : process->pid;
}

const char *
drover_cluster_dir (drover_cluster_t *self)
{
    assert (self);
    return self->dir;
}
