/*  child.c - a node's child process: fork, the channel to it, and the
    task loop it runs.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "child.h"

#include "chan.h"
#include "drover_chunk.h"
#include "drover_msg.h"
#include "exec_handler.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

//  The supervisor reads outcomes through a buffer of this size: one read
//  brings every outcome a stream of tiny tasks left in the channel
#define S_IN_BUFFER 16384

//  The child's end of the channel, after it has tidied its fds.
#define S_CHILD_FD     3 //  tasks come in on this pipe
#define S_CHILD_OUT_FD 4 //  outcomes go out on this one

//  A task sent to the child whose outcome has not come.
typedef struct {
    uint64_t id;         //  task id
    uint32_t attempt;    //  attempt
    uint64_t max_result; //  largest result accepted for it
} s_sent_t;

struct child_t {
    pid_t pid;                      //  the process, and its process group
    int fd;                         //  our end of the channel (non-blocking)
    int wfd;                        //  dup of fd, polled for output
    chan_header_t out_header;       //  header of the task being written
    const uint8_t *out_payload;     //  its payload; the caller keeps it alive
    size_t out_done;                //  octets of header + payload written
    bool writing;                   //  a task or a skip is partly written
    bool writing_task;              //  what is written is a task (the newest
                                    //  of sent)
    s_sent_t sent[CHILD_MAX_TASKS]; //  tasks sent whose outcome has not come,
                                    //  in order (the child runs them in order),
                                    //  a ring from sent_first
    size_t sent_first;              //  the oldest
    size_t sent_count;              //  how many
    uint8_t *in_buffer;      //  what one read brought, S_IN_BUFFER octets:
                             //  often several outcomes
    size_t in_start;         //  first octet of it not taken
    size_t in_end;           //  one past the last octet read
    chan_header_t in_header; //  header of the outcome being read
    size_t in_header_got;    //  octets of in_header read
    char *in_reason;         //  its reason, reason_size + 1 octets
    zframe_t *in_payload;    //  its result
    size_t in_body_got;      //  octets of reason + result read
};

//  --------------------------------------------------------------------------
//  In the child

static void __attribute__ ((noreturn)) s_child_exit (int status)
{
    //  Never exit(): the supervisor's atexit handlers (CZMQ's among them)
    //  must not run in a forked copy of it
    fflush (stdout);
    fflush (stderr);
    _exit (status);
}

//  The signal a child gets when the supervisor dies (PR_SET_PDEATHSIG).
//  A real-time one, so it does not collide with what in-process handlers
//  use; its default action still kills the child, should a handler reset it.
#define S_DEATH_SIGNAL (SIGRTMIN + 2)

//  Runs in the child when the supervisor dies: kills the child's whole
//  process group, the child itself and every command it runs (an exec
//  handler's shell and what the shell started), which no PDEATHSIG of
//  their own would reach. Only async-signal-safe calls.
static void
s_on_supervisor_death (int signal)
{
    (void)signal;
    if (getpgrp () == getpid ())
        kill (0, SIGKILL);
    kill (getpid (), SIGKILL);
    _exit (137);
}

//  SIGPIPE, when the supervisor is gone, must not kill the child before
//  the death signal does: a write to the closed pipe fails instead. A
//  handler, not SIG_IGN: exec resets it for the commands the child runs.
static void
s_on_sigpipe (int signal)
{
    (void)signal;
}

//  Makes the forked process a clean child: own process group, default
//  signals, dies with the supervisor and takes its process group along,
//  stdin from /dev/null, the channel's pipes on fds 3 (tasks in) and 4
//  (outcomes out) and no other inherited fd; SCHED_BATCH if so configured.
static void
s_child_setup (const worker_config_t *config, int tasks_in, int outcomes_out,
               pid_t supervisor)
{
    //  The group first: the death handler kills the group it leads, which
    //  must never be the supervisor's
    setpgid (0, 0);

    struct sigaction fallback;
    memset (&fallback, 0, sizeof fallback);
    fallback.sa_handler = SIG_DFL;
    sigemptyset (&fallback.sa_mask);
    for (int signal = 1; signal < 32; signal++)
        if (signal != SIGKILL && signal != SIGSTOP)
            sigaction (signal, &fallback, NULL);
    struct sigaction death;
    memset (&death, 0, sizeof death);
    death.sa_handler = s_on_supervisor_death;
    sigfillset (&death.sa_mask);
    sigaction (S_DEATH_SIGNAL, &death, NULL);
    struct sigaction pipe_closed;
    memset (&pipe_closed, 0, sizeof pipe_closed);
    pipe_closed.sa_handler = s_on_sigpipe;
    sigemptyset (&pipe_closed.sa_mask);
    sigaction (SIGPIPE, &pipe_closed, NULL);
    sigset_t none;
    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);

    //  A batch process never preempts a normal one when it wakes: a task
    //  written to this child does not push the supervisor off its core.
    //  Only from the normal policy: one an operator chose for the node
    //  (idle, real-time, batch) is the children's too. Any process may
    //  take SCHED_BATCH; if a sandbox refuses it, the child says so and
    //  runs as a normal one
    if (config->batch_children && sched_getscheduler (0) == SCHED_OTHER) {
        struct sched_param param = {.sched_priority = 0};
        if (sched_setscheduler (0, SCHED_BATCH, &param) != 0) {
            static const char refused[] =
                "drover worker: a child could not take SCHED_BATCH; it runs "
                "under the normal policy\n";
            ssize_t written =
                write (STDERR_FILENO, refused, sizeof refused - 1);
            (void)written;
        }
    }
    prctl (PR_SET_PDEATHSIG, S_DEATH_SIGNAL);
    //  The supervisor died before prctl: nobody will send the signal
    if (getppid () != supervisor)
        s_on_supervisor_death (S_DEATH_SIGNAL);

    //  Out of the way of 0 to 4 first, then into place
    int high_in = fcntl (tasks_in, F_DUPFD, 10);
    int high_out = fcntl (outcomes_out, F_DUPFD, 10);
    int null = open ("/dev/null", O_RDWR);
    if (high_in < 0 || high_out < 0 || null < 0)
        s_child_exit (70);
    dup2 (null, 0);
    for (int fd = 1; fd <= 2; fd++)
        if (fcntl (fd, F_GETFD) < 0)
            dup2 (null, fd);
    dup2 (high_in, S_CHILD_FD);
    dup2 (high_out, S_CHILD_OUT_FD);
    //  Commands run by exec handlers do not inherit the channel; the
    //  buffered reader reads without waiting when it only looks
    fcntl (S_CHILD_FD, F_SETFD, FD_CLOEXEC);
    fcntl (S_CHILD_OUT_FD, F_SETFD, FD_CLOEXEC);
    fcntl (S_CHILD_FD, F_SETFL, O_NONBLOCK);
    close_range (S_CHILD_OUT_FD + 1, ~0U, 0);
}

//  User + system CPU time in a rusage, in microseconds.
static uint64_t
s_usage_us (const struct rusage *usage)
{
    return (uint64_t)usage->ru_utime.tv_sec * 1000000
           + (uint64_t)usage->ru_utime.tv_usec
           + (uint64_t)usage->ru_stime.tv_sec * 1000000
           + (uint64_t)usage->ru_stime.tv_usec;
}

//  CPU time, user + system, of this process and of the children it has
//  waited for, in microseconds; *max_rss_kb_p (if not NULL) gets our peak
//  memory. The children's part changes only when a command ran: it is
//  asked again only when children_ran (a system call less per task for
//  in-process handlers, which matters for tiny tasks).
static uint64_t
s_cpu_us (bool children_ran, uint64_t *max_rss_kb_p)
{
    static uint64_t children_us;
    struct rusage usage;
    if (children_ran && getrusage (RUSAGE_CHILDREN, &usage) == 0)
        children_us = s_usage_us (&usage);
    uint64_t self_us = 0;
    if (getrusage (RUSAGE_SELF, &usage) == 0) {
        self_us = s_usage_us (&usage);
        if (max_rss_kb_p && usage.ru_maxrss > 0)
            *max_rss_kb_p = (uint64_t)usage.ru_maxrss;
    }
    return self_us + children_us;
}

//  Runs the handler over one input; fills output and, for an exec
//  handler, status. Returns 0 or the failure's code (output's message
//  says why).
static int
s_run_input (const handler_t *handler, const void *input, size_t size,
             drover_output_t *output, exec_status_t *status)
{
    memset (status, 0, sizeof *status);
    int code;
    if (handler->kind == HANDLER_EXEC) {
        //  The soft time limit's SIGTERM is for the command: we stay to
        //  report how it ended (the command resets the disposition)
        struct sigaction ignore, saved;
        memset (&ignore, 0, sizeof ignore);
        ignore.sa_handler = SIG_IGN;
        sigemptyset (&ignore.sa_mask);
        sigaction (SIGTERM, &ignore, &saved);
        code = exec_handler_run (handler->command, input, size, output, status);
        sigaction (SIGTERM, &saved, NULL);
    }
    else {
        int rc = handler->fn (input, size, output, handler->arg);
        code = rc == 0 ? 0 : DROVER_EFAILED;
        if (rc && !output->message)
            drover_output_fail (output, "handler '%s' returned %d",
                                handler->name, rc);
    }
    if (code == 0 && output->error == DROVER_ETOOBIG) {
        code = DROVER_ETOOBIG;
        drover_output_fail (output,
                            "handler '%s': result over the limit of %zu "
                            "octets",
                            handler->name, output->limit);
    }
    else if (code == 0 && output->error) {
        code = output->error;
        drover_output_fail (output, "handler '%s': out of memory",
                            handler->name);
    }
    return code;
}

//  Runs the handler over each input of a chunk (SPEC.md 7.7) and puts
//  their outcomes, as one chunk result, in output. Returns 0, or the
//  chunk's failure: DROVER_EINVAL (malformed), DROVER_ETOOBIG (the
//  result passes the limit), DROVER_ENOMEM.
static int
s_run_chunk (const handler_t *handler, uint32_t items, const void *chunk,
             size_t size, drover_output_t *output)
{
    drover_chunk_reader_t reader;
    drover_chunk_writer_t writer;
    drover_chunk_writer_init (&writer, output->limit);
    drover_output_t item_output;
    output_init (&item_output, output->limit);
    int rc = drover_chunk_open (&reader, chunk, size, items);
    const void *input;
    size_t input_size;
    while (rc == 0
           && (rc = drover_chunk_next_input (&reader, &input, &input_size))
                  == 1) {
        exec_status_t status;
        int code =
            s_run_input (handler, input, input_size, &item_output, &status);
        rc =
            code == 0
                ? drover_chunk_add (&writer, item_output.data, item_output.size)
                : drover_chunk_add_failure (&writer, code, item_output.message);
        output_clear (&item_output);
    }
    output_reset (&item_output);
    uint8_t *data = NULL;
    size_t data_size = 0;
    if (rc == 0)
        rc = drover_chunk_finish (&writer, &data, &data_size);
    drover_chunk_writer_reset (&writer);
    if (rc == 0) {
        output_reset (output);
        output->data = data;
        output->size = output->capacity = data_size;
    }
    else if (rc == DROVER_EINVAL)
        drover_output_fail (output,
                            "the chunk is not a msgpack array of %" PRIu32
                            " bin inputs",
                            items);
    else if (rc == DROVER_ETOOBIG)
        drover_output_fail (output,
                            "handler '%s': the chunk's results pass the "
                            "limit of %zu octets",
                            handler->name, output->limit);
    else
        drover_output_fail (output, "handler '%s': out of memory",
                            handler->name);
    return rc;
}

//  Runs one task with its handler; fills header and output.
static void
s_child_run (const worker_config_t *config, chan_header_t *header,
             const void *input, drover_output_t *output)
{
    const handler_t *handler = &config->handlers[header->handler];
    size_t size = (size_t)header->payload_size;
    bool exec = handler->kind == HANDLER_EXEC;
    //  The CPU time at the end of the task before (a system call less
    //  per task): reading this task's input counts as this task's
    static bool known;
    static uint64_t cpu_total_us;
    uint64_t cpu_before = known ? cpu_total_us : s_cpu_us (false, NULL);
    exec_status_t status;
    memset (&status, 0, sizeof status);
    int code = header->items
                   ? s_run_chunk (handler, header->items, input, size, output)
                   : s_run_input (handler, input, size, output, &status);
    header->signal = status.signal;
    header->exit_status = status.exit_status;
    header->code = code;
    uint64_t max_rss_kb = 0;
    header->cpu_total_us = cpu_total_us = s_cpu_us (exec, &max_rss_kb);
    known = true;
    header->child_max_rss_kb = max_rss_kb;
    header->max_rss_kb =
        exec && !header->items ? status.max_rss_kb : max_rss_kb;
    header->cpu_us = header->cpu_total_us > cpu_before
                         ? header->cpu_total_us - cpu_before
                         : 0;
}

//  The child's end of its channel, buffered.
static chan_reader_t s_reader = {.fd = S_CHILD_FD};

//  Tasks read from the channel that wait their turn, oldest first: the
//  supervisor may send several ahead (CHILD_MAX_TASKS at most).
typedef struct {
    chan_header_t header; //  the task
    void *input;          //  its input, header.payload_size octets
    bool skip;            //  the supervisor asked that it not be started
} s_pending_t;
static s_pending_t s_pending[CHILD_MAX_TASKS]; //  a ring from s_pending_first
static size_t s_pending_first;
static size_t s_pending_count;

//  Takes one message from the channel: a task joins the pending ones; a
//  CHAN_SKIP marks its pending task (one already run is past skipping).
//  Without wait, only a message whose header is already there (after at
//  most one read that does not wait). Returns 1 for a message, 0 for none
//  without waiting; leaves at end of file or on a malformed message.
static int
s_take_message (const worker_config_t *config, bool wait)
{
    chan_header_t header;
    const void *peek;
    if (!wait && !chan_reader_peek (&s_reader, sizeof header, &peek))
        return 0;
    if (chan_reader_read (&s_reader, &header, sizeof header))
        s_child_exit (0); //  the supervisor closed the channel
    if (header.type == CHAN_SKIP) {
        for (size_t i = 0; i < s_pending_count; i++) {
            s_pending_t *task =
                &s_pending[(s_pending_first + i) % CHILD_MAX_TASKS];
            if (task->header.id == header.id
                && task->header.attempt == header.attempt)
                task->skip = true;
        }
        return 1;
    }
    if (header.type != CHAN_TASK || header.handler >= config->handler_count
        || header.payload_size > DROVER_MAX_PAYLOAD
        || s_pending_count == CHILD_MAX_TASKS)
        s_child_exit (71);
    size_t size = (size_t)header.payload_size;
    void *input = malloc (size ? size : 1);
    if (!input)
        s_child_exit (72);
    //  The rest of a task whose header came is on its way
    if (chan_reader_read (&s_reader, input, size))
        s_child_exit (0);
    s_pending[(s_pending_first + s_pending_count++) % CHILD_MAX_TASKS] =
        (s_pending_t){header, input, false};
    return 1;
}

//  The next task to run or to skip, with what the channel holds taken
//  first (so a CHAN_SKIP sent after it is seen); waits for one.
static s_pending_t
s_next_task (const worker_config_t *config)
{
    while (s_pending_count == 0)
        s_take_message (config, true);
    while (s_take_message (config, false))
        ;
    s_pending_t next = s_pending[s_pending_first];
    s_pending_first = (s_pending_first + 1) % CHILD_MAX_TASKS;
    s_pending_count--;
    return next;
}

//  The child's life: take a task, run it, write its outcome; leave at end
//  of file or after max_tasks_per_child tasks.
static void __attribute__ ((noreturn))
s_child_main (const worker_config_t *config, int tasks_in, int outcomes_out,
              pid_t supervisor)
{
    s_child_setup (config, tasks_in, outcomes_out, supervisor);
    uint64_t tasks = 0;
    while (true) {
        s_pending_t next = s_next_task (config);
        chan_header_t header = next.header;
        void *input = next.input;
        if (next.skip) {
            free (input);
            header.type = CHAN_SKIPPED;
            header.reason_size = 0;
            header.payload_size = 0;
            if (chan_write_all (S_CHILD_OUT_FD, &header, sizeof header))
                s_child_exit (0);
            continue;
        }
        drover_output_t output;
        uint64_t limit = header.max_result < DROVER_MAX_PAYLOAD
                             ? header.max_result
                             : DROVER_MAX_PAYLOAD;
        output_init (&output, (size_t)limit);

        s_child_run (config, &header, input, &output);
        free (input);

        header.type = CHAN_OUTCOME;
        size_t reason_size = 0;
        if (header.code != 0 && output.message) {
            reason_size = strlen (output.message);
            if (reason_size > DROVER_MAX_TEXT)
                reason_size = DROVER_MAX_TEXT;
        }
        header.reason_size = (uint32_t)reason_size;
        header.payload_size = header.code == 0 ? output.size : 0;
        struct iovec parts[3] = {{&header, sizeof header},
                                 {output.message, reason_size},
                                 {output.data, (size_t)header.payload_size}};
        if (chan_writev_all (S_CHILD_OUT_FD, parts, 3))
            s_child_exit (0);
        output_reset (&output);
        tasks++;
        if (config->max_tasks_per_child && tasks >= config->max_tasks_per_child)
            s_child_exit (0); //  retired; the supervisor starts another
    }
}

//  --------------------------------------------------------------------------
//  In the supervisor

child_t *
child_new (const worker_config_t *config)
{
    assert (config);
    //  Two pipes, not one socketpair: reading from a socket wakes whoever
    //  waits on its peer, so every outcome the supervisor read woke the
    //  child that waited for its next task, for nothing
    int tasks[2], outcomes[2];
    if (pipe2 (tasks, O_CLOEXEC)) {
        zsys_error ("worker: cannot create a channel for a child: %s",
                    strerror (errno));
        return NULL;
    }
    if (pipe2 (outcomes, O_CLOEXEC)) {
        zsys_error ("worker: cannot create a channel for a child: %s",
                    strerror (errno));
        close (tasks[0]);
        close (tasks[1]);
        return NULL;
    }
    child_t *self = (child_t *)zmalloc (sizeof *self);
    assert (self);
    self->in_buffer = (uint8_t *)malloc (S_IN_BUFFER);
    assert (self->in_buffer);
    //  Whatever we buffered must not be written twice
    fflush (stdout);
    fflush (stderr);
    pid_t supervisor = getpid ();
    pid_t pid = fork ();
    if (pid == 0)
        s_child_main (config, tasks[0], outcomes[1], supervisor);
    close (tasks[0]);
    close (outcomes[1]);
    if (pid < 0) {
        zsys_error ("worker: cannot fork a child: %s", strerror (errno));
        close (tasks[1]);
        close (outcomes[0]);
        free (self->in_buffer);
        free (self);
        return NULL;
    }
    //  Also in the child: whichever runs first, the group exists before
    //  anyone signals it
    setpgid (pid, pid);
    self->pid = pid;
    self->fd = outcomes[0];
    self->wfd = tasks[1];
    fcntl (self->fd, F_SETFL, O_NONBLOCK);
    fcntl (self->wfd, F_SETFL, O_NONBLOCK);
    return self;
}

void
child_destroy (child_t **self_p)
{
    assert (self_p);
    child_t *self = *self_p;
    if (!self)
        return;
    close (self->fd);
    close (self->wfd);
    free (self->in_reason);
    zframe_destroy (&self->in_payload);
    free (self->in_buffer);
    free (self);
    *self_p = NULL;
}

pid_t
child_pid (child_t *self)
{
    assert (self);
    return self->pid;
}

int
child_fd (child_t *self)
{
    assert (self);
    return self->fd;
}

int
child_wfd (child_t *self)
{
    assert (self);
    return self->wfd;
}

bool
child_writing (child_t *self)
{
    assert (self);
    return self->writing;
}

int
child_skip (child_t *self, uint64_t id, uint32_t attempt)
{
    assert (self);
    assert (!self->writing);
    memset (&self->out_header, 0, sizeof self->out_header);
    self->out_header.type = CHAN_SKIP;
    self->out_header.id = id;
    self->out_header.attempt = attempt;
    self->out_payload = NULL;
    self->out_done = 0;
    self->writing = true;
    self->writing_task = false;
    return child_flush (self);
}

size_t
child_sent (child_t *self)
{
    assert (self);
    return self->sent_count;
}

int
child_send (child_t *self, uint64_t id, uint32_t attempt, uint32_t handler,
            uint32_t items, uint64_t max_result, const void *payload,
            size_t size)
{
    assert (self);
    assert (!self->writing && self->sent_count < CHILD_MAX_TASKS);
    assert (payload || size == 0);
    memset (&self->out_header, 0, sizeof self->out_header);
    self->out_header.type = CHAN_TASK;
    self->out_header.handler = handler;
    self->out_header.items = items;
    self->out_header.id = id;
    self->out_header.attempt = attempt;
    self->out_header.max_result = max_result;
    self->out_header.payload_size = size;
    self->out_payload = (const uint8_t *)payload;
    self->out_done = 0;
    self->writing = true;
    self->writing_task = true;
    size_t last = (self->sent_first + self->sent_count) % CHILD_MAX_TASKS;
    self->sent[last].id = id;
    self->sent[last].attempt = attempt;
    self->sent[last].max_result = max_result;
    self->sent_count++;
    return child_flush (self);
}

int
child_flush (child_t *self)
{
    assert (self);
    const size_t header_size = sizeof self->out_header;
    const size_t total = header_size + self->out_header.payload_size;
    while (self->writing) {
        struct iovec iov[2];
        int count = 0;
        if (self->out_done < header_size) {
            iov[count++] =
                (struct iovec){(char *)&self->out_header + self->out_done,
                               header_size - self->out_done};
            iov[count++] = (struct iovec){(void *)self->out_payload,
                                          self->out_header.payload_size};
        }
        else {
            size_t done = self->out_done - header_size;
            iov[count++] = (struct iovec){(void *)(self->out_payload + done),
                                          self->out_header.payload_size - done};
        }
        //  SIGPIPE is blocked in the supervisor (node.c): a dead child's
        //  pipe gives EPIPE
        ssize_t put = writev (self->wfd, iov, count);
        if (put < 0 && errno == EINTR)
            continue;
        if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return CHILD_AGAIN;
        if (put < 0) {
            self->writing = self->writing_task = false;
            self->out_payload = NULL;
            return CHILD_EOF;
        }
        self->out_done += (size_t)put;
        if (self->out_done == total) {
            self->writing = self->writing_task = false;
            self->out_payload = NULL;
        }
    }
    return CHILD_DONE;
}

//  Forgets the oldest task sent: its outcome came.
static void
s_pop_sent (child_t *self)
{
    self->sent_count--;
    self->sent_first = (self->sent_first + 1) % CHILD_MAX_TASKS;
}

//  Checks a complete outcome header and prepares its body buffers;
//  CHILD_SKIPPED for a valid CHAN_SKIPPED.
static int
s_accept_header (child_t *self)
{
    chan_header_t *header = &self->in_header;
    const s_sent_t *oldest = &self->sent[self->sent_first];
    //  The outcome of the oldest task sent, and never of one being written
    //  (accepting it would free the payload child_flush still reads)
    size_t written = self->sent_count - (self->writing_task ? 1 : 0);
    if (header->type == CHAN_SKIPPED)
        return self->sent_count && written && header->id == oldest->id
                       && header->attempt == oldest->attempt
                       && header->reason_size == 0 && header->payload_size == 0
                   ? CHILD_SKIPPED
                   : CHILD_EPROTO;
    if (header->type != CHAN_OUTCOME || self->sent_count == 0 || written == 0
        || header->id != oldest->id || header->attempt != oldest->attempt
        || header->reason_size > DROVER_MAX_TEXT
        || header->payload_size > oldest->max_result
        || header->payload_size > DROVER_MAX_PAYLOAD || header->code > 0
        || header->code < DROVER_ELAST
        || (header->code && header->payload_size))
        return CHILD_EPROTO;
    self->in_reason = (char *)malloc (header->reason_size + 1);
    self->in_payload = zframe_new (NULL, (size_t)header->payload_size);
    if (!self->in_reason || !self->in_payload)
        return CHILD_EPROTO; //  no memory for it: the child is killed
    self->in_body_got = 0;
    return CHILD_DONE;
}

//  Moves up to size octets of what the channel has to data: from the
//  buffer, else after one read (into the buffer, or for a large result
//  straight into data). Returns the octets moved, 0 at end of file, or -1
//  with errno set.
static ssize_t
s_take (child_t *self, void *data, size_t size)
{
    if (self->in_start == self->in_end) {
        if (size >= S_IN_BUFFER)
            return read (self->fd, data, size);
        ssize_t got = read (self->fd, self->in_buffer, S_IN_BUFFER);
        if (got <= 0)
            return got;
        self->in_start = 0;
        self->in_end = (size_t)got;
    }
    size_t buffered = self->in_end - self->in_start;
    size_t moved = buffered < size ? buffered : size;
    memcpy (data, self->in_buffer + self->in_start, moved);
    self->in_start += moved;
    return (ssize_t)moved;
}

int
child_receive (child_t *self, child_outcome_t *outcome)
{
    assert (self);
    assert (outcome);
    const size_t header_size = sizeof self->in_header;
    while (true) {
        ssize_t got;
        if (self->in_header_got < header_size) {
            got = s_take (self, (char *)&self->in_header + self->in_header_got,
                          header_size - self->in_header_got);
            if (got > 0) {
                self->in_header_got += (size_t)got;
                int accepted = self->in_header_got == header_size
                                   ? s_accept_header (self)
                                   : CHILD_DONE;
                if (accepted == CHILD_SKIPPED) {
                    memset (outcome, 0, sizeof *outcome);
                    outcome->id = self->in_header.id;
                    outcome->attempt = self->in_header.attempt;
                    self->in_header_got = 0;
                    s_pop_sent (self);
                    return CHILD_SKIPPED;
                }
                if (accepted != CHILD_DONE)
                    return CHILD_EPROTO;
            }
        }
        else {
            size_t reason_size = self->in_header.reason_size;
            size_t payload_size = (size_t)self->in_header.payload_size;
            if (self->in_body_got < reason_size)
                got = s_take (self, self->in_reason + self->in_body_got,
                              reason_size - self->in_body_got);
            else if (self->in_body_got < reason_size + payload_size) {
                size_t done = self->in_body_got - reason_size;
                got = s_take (self, zframe_data (self->in_payload) + done,
                              payload_size - done);
            }
            else
                got = 1; //  nothing left to read: complete
            if (got > 0 && self->in_body_got < reason_size + payload_size)
                self->in_body_got += (size_t)got;
            if (got > 0 && self->in_body_got == reason_size + payload_size) {
                memset (outcome, 0, sizeof *outcome);
                outcome->id = self->in_header.id;
                outcome->attempt = self->in_header.attempt;
                outcome->code = self->in_header.code;
                outcome->signal = self->in_header.signal;
                outcome->exit_status = self->in_header.exit_status;
                outcome->max_rss_kb = self->in_header.max_rss_kb;
                outcome->cpu_us = self->in_header.cpu_us;
                outcome->cpu_total_us = self->in_header.cpu_total_us;
                outcome->child_max_rss_kb = self->in_header.child_max_rss_kb;
                if (reason_size > 0) {
                    for (size_t i = 0; i < reason_size; i++)
                        if (self->in_reason[i] == 0)
                            self->in_reason[i] = '?';
                    self->in_reason[reason_size] = 0;
                    outcome->reason = self->in_reason;
                }
                else
                    free (self->in_reason);
                self->in_reason = NULL;
                outcome->payload = self->in_payload;
                self->in_payload = NULL;
                self->in_header_got = 0;
                self->in_body_got = 0;
                s_pop_sent (self);
                return CHILD_OUTCOME;
            }
        }
        if (got == 0)
            return CHILD_EOF;
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? CHILD_AGAIN
                                                           : CHILD_EOF;
    }
}

void
child_outcome_reset (child_outcome_t *outcome)
{
    assert (outcome);
    free (outcome->reason);
    zframe_destroy (&outcome->payload);
    memset (outcome, 0, sizeof *outcome);
}

void
child_kill (child_t *self)
{
    assert (self);
    if (kill (-self->pid, SIGKILL) && errno == ESRCH)
        kill (self->pid, SIGKILL);
}

void
child_terminate (child_t *self)
{
    assert (self);
    if (kill (-self->pid, SIGTERM) && errno == ESRCH)
        kill (self->pid, SIGTERM);
}
