/*  node.c - the supervisor of a worker node.

    State, in short:
    * a session with the broker: a DEALER socket, HELLO until WELCOME, then
      CREDIT / DISPATCH / FAIL / REVOKE / DRAIN and heartbeats both ways; a
      silent broker or BYE DROVER_ESTALE ends the session: a new socket
      and HELLO again;
    * slots, one per child: the child process and the task it runs;
    * pipelining: while tasks are short (automatic lookahead, a moving
      average under S_PIPELINE_TASK_US), a busy child is sent the tasks
      to run after the one it runs (about S_PIPELINE_COVER_US of them),
      so it never waits for the supervisor between two; they keep their
      inputs and go back to the local queue if the child is killed or
      dies before starting them; when another child is idle while the
      one before them has run longer than S_PIPELINE_TASK_US, a copy of
      each goes back to the local queue and the child is asked to skip
      its own (now ghosts: never reported, dropped when the child skips
      them, runs them anyway or dies), so a short task never waits long
      behind a long one;
    * a local queue of leased tasks waiting for an idle child (lookahead;
      automatic: one per child while a moving average of the task run
      times is under DROVER_WORKER_SHORT_TASK_MS, else none);
    * credit: the broker's unused credit; held tasks + credit never pass
      the live children + lookahead;
    * results waiting for STORED (results.c) and failures waiting to go to
      the broker.
    Outcomes that arrive in one reactor pass are sent in one batch: every
    event that produces output schedules a zero-delay flush timer, which
    zloop runs after the pollers of the pass.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "node.h"

#include "child.h"
#include "drover_wire.h"
#include "id_map.h"
#include "results.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

//  Housekeeping period
#define S_TICK_MS 20
//  HELLO again at this interval until WELCOME
#define S_HELLO_IVL_MS 500
//  Heartbeat and liveness until WELCOME says otherwise
#define S_HEARTBEAT_MS 1000
#define S_LIVENESS     5
//  Reconnect backoff of both sockets: from S_RECONNECT_MIN_MS doubling up
//  to heartbeat_ms * liveness, at most S_RECONNECT_MAX_MS
#define S_RECONNECT_MIN_MS 100
#define S_RECONNECT_MAX_MS 5000
//  ZMTP's TTL travels in deciseconds in 16 bits (libzmq's upper bound)
#define S_ZMTP_TTL_MAX_MS 6553599
//  An idle child dying younger than this is restarted with backoff, from
//  S_BACKOFF_MIN_MS doubling up to S_BACKOFF_MAX_MS
#define S_QUICK_DEATH_MS 1000
#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS 10000
//  Messages read per socket event
#define S_READ_BURST 64
//  A repeated warning is logged once per this
#define S_LOG_IVL_MS 5000
//  No credit while more results than this (or 4 per slot), or more octets
//  than S_MAX_RESULT_OCTETS, wait for STORED
#define S_MIN_RESULTS_HELD  64
#define S_MAX_RESULT_OCTETS (512u << 20)
//  Resident memory of busy children is checked at this interval (SPEC 7.5:
//  at least every 100 ms; the tick is S_TICK_MS)
#define S_MEMORY_CHECK_MS 60
//  Automatic lookahead: held tasks cover this much work per child, with
//  at most this many per child
#define S_LOOKAHEAD_COVER_US  2000
#define S_LOOKAHEAD_PER_CHILD 256
//  Automatic lookahead: a busy child gets its next task early while tasks
//  take less than this on average (so a task sent early waits at most
//  about this long behind the one before it, while the supervisor's round
//  trip it saves, some 50 to 100 us, is 2 % or more of such a task)
#define S_PIPELINE_TASK_US 5000
//  ... and sends it as many tasks ahead as take about this long, at most
//  CHILD_MAX_TASKS - 1: a child that runs tiny tasks then finds its next
//  ones in its channel even when the supervisor was slow to come back
#define S_PIPELINE_COVER_US 1000
#define S_PIPELINE_MAX      (CHILD_MAX_TASKS - 1)
//  How long the BYE at exit may take to leave
#define S_BYE_LINGER_MS 1000 //  to deliver BYE at exit

//  A task leased to this node.
typedef struct {
    uint64_t id;              //  task id
    uint32_t attempt;         //  attempt number (the fencing token)
    uint32_t handler;         //  index in the handler table
    uint32_t items;           //  inputs in its chunk; 0: one input
    uint64_t timeout_ms;      //  hard time limit of the attempt; 0: none
    uint64_t soft_timeout_ms; //  soft time limit (SIGTERM); 0: none
    zframe_t *payload;        //  input octets
    int64_t started_us;       //  when a child got it
    bool revoked;             //  revoked while it waited in a child's
                              //  channel: killed when it starts
    bool skip_asked;          //  a ghost: the child was asked not to start
                              //  it, and a copy went back to the queue
} s_task_t;

//  A failed attempt waiting to go to the broker in a FAIL.
typedef struct {
    uint64_t id;         //  task id
    uint32_t attempt;    //  attempt number
    int32_t code;        //  DROVER_EFAILED, ECRASHED, ETIMELIMIT, ...
    char *reason;        //  why, or NULL
    uint64_t elapsed_us; //  run time
    uint64_t cpu_us;     //  CPU time, user + system
    int32_t signal;      //  signal that killed the child or command
    int32_t exit_status; //  exit status of the child or command
    uint64_t max_rss_kb; //  peak memory
} s_fail_t;

//  Why the supervisor signalled a child's process group during a task.
typedef enum {
    S_KILLED_NONE = 0, //  it did not
    S_KILLED_SOFT,     //  SIGTERM: the soft time limit
    S_KILLED_HARD,     //  SIGKILL: the hard limit, or soft limit + grace
    S_KILLED_MEMORY,   //  SIGKILL: over --max-memory-per-child
} s_killed_for_t;

//  One child and what it does.
typedef struct {
    struct node_t *node;              //  the node it belongs to
    child_t *child;                   //  the process, or NULL while none runs
    s_task_t *task;                   //  the task it runs, or NULL when idle
    s_task_t *queued[S_PIPELINE_MAX]; //  tasks sent to run after it, in
                                      //  order
    size_t queued_count;              //  how many
    s_task_t *writing;                //  the task whose input is being written
    uint64_t tasks_run;               //  outcomes it delivered
    int64_t started_ms;               //  when it was forked
    int64_t restart_at_ms;            //  when to fork again; 0: not waiting
    uint32_t backoff_ms;              //  delay of the next quick restart
    bool polling_write;               //  its wfd is registered with the loop
    bool eof;                  //  its channel is closed; SIGCHLD will come
    bool exited;               //  reaped
    bool draining;             //  reaped, and what it left in its channel
                               //  is being read: the outcomes of tasks it
                               //  ran after the one it was sent first
    s_killed_for_t killed_for; //  signalled for a limit of its task
    uint64_t killed_after_ms;  //  the task's run time when that happened
    uint64_t peak_rss_kb;      //  largest group RSS seen during the task
    uint64_t cpu_base_us;      //  the child's CPU time when its task began
    bool recycling;            //  killed after a task that passed the memory
                               //  limit; replaced like a retired child
    bool revoked;              //  killed because the broker revoked the task
    int64_t revoke_kill_us;    //  revoked: when SIGKILL follows SIGTERM
} s_slot_t;

//  Limits a repetitive warning to one line per S_LOG_IVL_MS.
typedef struct {
    int64_t last_ms;     //  when it was last logged
    uint64_t suppressed; //  how many were not logged since
} s_limit_t;

struct node_t {
    const worker_config_t *config; //  settings and handlers
    const char **handler_names;    //  the handlers' names, for HELLO
    zloop_t *loop;                 //  the reactor
    int signal_fd;                 //  SIGCHLD, SIGTERM, SIGINT
    sigset_t saved_mask;           //  the thread's mask before node_run
    struct sigaction saved_chld;   //  SIGCHLD's disposition before it
    zsock_t *broker;               //  DEALER to the broker
    zsock_t *sink;                 //  DEALER to the sink, or NULL
    char *sink_endpoint;           //  the sink's endpoint, or NULL
    char *instance;                //  the broker run of the last WELCOME
    bool welcomed;                 //  this session got its WELCOME
    uint32_t heartbeat_ms;         //  heartbeat interval (WELCOME)
    uint32_t liveness;             //  intervals of silence that kill
    uint64_t max_payload;          //  largest payload the cluster takes
    uint32_t max_batch;            //  most items per message
    int64_t broker_sent_ms;        //  last message sent to the broker
    int64_t broker_recv_ms;        //  last message from the broker
    int64_t hello_sent_ms;         //  last HELLO sent
    s_slot_t *slots;               //  one per child
    size_t slot_count;             //  config->children
    uint32_t lookahead_max;        //  the lookahead announced in HELLO
    int64_t task_us_average;       //  moving average of run times (us);
                                   //  -1 before the first outcome
    zlistx_t *queue;               //  s_task_t leased, waiting for a child
    id_map_t *held;                //  id -> the s_task_t of its newest
                                   //  attempt the node holds, wherever
    uint32_t credit;               //  credit the broker has not used
    results_t *results;            //  results waiting for STORED
    zlistx_t *fails;               //  s_fail_t waiting for the broker
    bool flush_pending;            //  the flush timer is set
    bool draining;                 //  no new tasks; leave when all done
    int64_t drain_deadline_ms;     //  when to stop draining; 0: never
    bool stopping;                 //  the reactor must end
    int rc;                        //  what node_run returns
    uint64_t malformed;            //  malformed messages dropped
    s_limit_t malformed_log;       //  rate limit of those warnings
    s_limit_t error_log;           //  of ERRORs from broker and sink
    s_limit_t held_log;            //  of "credit held back" notices
    s_limit_t proc_log;            //  of failures to read /proc
    int64_t memory_checked_ms;     //  last check of children's memory
};

//  --------------------------------------------------------------------------
//  Small helpers

static int64_t
s_now_ms (void)
{
    return zclock_mono ();
}

static int64_t
s_now_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

static bool
s_limit_pass (s_limit_t *limit)
{
    int64_t now = s_now_ms ();
    if (limit->last_ms && now - limit->last_ms < S_LOG_IVL_MS) {
        limit->suppressed++;
        return false;
    }
    limit->last_ms = now;
    if (limit->suppressed)
        zsys_warning ("worker: %" PRIu64 " similar warnings not logged",
                      limit->suppressed);
    limit->suppressed = 0;
    return true;
}

static const char *
s_handler_name (node_t *self, uint32_t handler)
{
    return self->config->handlers[handler].name;
}

//  Unmaps a task's id if the node's map of held tasks points at it.
static void
s_unhold (node_t *self, s_task_t *task)
{
    if (id_map_lookup (self->held, task->id) == task)
        id_map_remove (self->held, task->id);
}

//  Frees a task, and unmaps its id if the node's map points at it.
static void
s_task_destroy (node_t *self, s_task_t **task_p)
{
    s_task_t *task = *task_p;
    if (task) {
        s_unhold (self, task);
        zframe_destroy (&task->payload);
        free (task);
        *task_p = NULL;
    }
}

static void
s_fail_destroy (void **item_p)
{
    s_fail_t *fail = (s_fail_t *)*item_p;
    if (fail) {
        free (fail->reason);
        free (fail);
        *item_p = NULL;
    }
}

static size_t
s_running (node_t *self)
{
    size_t running = 0;
    for (size_t i = 0; i < self->slot_count; i++)
        if (self->slots[i].task)
            running++;
    return running;
}

//  Tasks this node holds: running, sent to run next, and waiting.
static size_t
s_held (node_t *self)
{
    size_t held = s_running (self) + zlistx_size (self->queue);
    for (size_t i = 0; i < self->slot_count; i++)
        held += self->slots[i].queued_count;
    return held;
}

static bool
s_slot_retiring (node_t *self, s_slot_t *slot)
{
    uint32_t limit = self->config->max_tasks_per_child;
    return limit && slot->tasks_run >= limit;
}

//  A child we have killed (time limit, REVOKE) takes no task, even when
//  the outcome of its last one arrives after the kill: the next task would
//  die with it and be reported with the killed task's cause.
static bool
s_slot_idle (node_t *self, s_slot_t *slot)
{
    return slot->child && !slot->task && !slot->eof && !slot->exited
           && slot->killed_for == S_KILLED_NONE && !slot->recycling
           && !slot->revoked && !s_slot_retiring (self, slot);
}

static void s_flush (node_t *self);

static int
s_on_flush (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    node_t *self = (node_t *)arg;
    self->flush_pending = false;
    s_flush (self);
    return self->stopping ? -1 : 0;
}

//  Sends what is ready once the reactor has handled this pass's events.
static void
s_schedule_flush (node_t *self)
{
    if (!self->flush_pending && !self->stopping) {
        if (zloop_timer (self->loop, 0, 1, s_on_flush, self) != -1)
            self->flush_pending = true;
    }
}

static int
s_send_broker (node_t *self, drover_msg_t *msg)
{
    int rc = drover_wire_send (self->broker, NULL, msg, NULL);
    if (rc == 0) {
        self->broker_sent_ms = s_now_ms ();
        if (self->config->verbose)
            zsys_debug ("worker: -> broker %s (%zu items)",
                        drover_command_name (msg->command), msg->task_count);
    }
    return rc;
}

//  --------------------------------------------------------------------------
//  Children

static int s_on_child_read (zloop_t *loop, zmq_pollitem_t *item, void *arg);
static int s_on_child_write (zloop_t *loop, zmq_pollitem_t *item, void *arg);

static void
s_slot_stop_polling (node_t *self, s_slot_t *slot)
{
    if (!slot->child)
        return;
    if (!slot->eof) {
        zmq_pollitem_t item = {NULL, child_fd (slot->child), ZMQ_POLLIN, 0};
        zloop_poller_end (self->loop, &item);
    }
    if (slot->polling_write) {
        zmq_pollitem_t item = {NULL, child_wfd (slot->child), ZMQ_POLLOUT, 0};
        zloop_poller_end (self->loop, &item);
        slot->polling_write = false;
    }
}

//  Forks the slot's child; on failure, tries again later.
static void
s_slot_start (node_t *self, s_slot_t *slot)
{
    assert (!slot->child);
    int64_t now = s_now_ms ();
    slot->restart_at_ms = 0;
    slot->child = child_new (self->config);
    if (!slot->child) {
        slot->backoff_ms = slot->backoff_ms
                               ? (slot->backoff_ms * 2 > S_BACKOFF_MAX_MS
                                      ? S_BACKOFF_MAX_MS
                                      : slot->backoff_ms * 2)
                               : S_BACKOFF_MIN_MS;
        slot->restart_at_ms = now + slot->backoff_ms;
        return;
    }
    slot->tasks_run = 0;
    slot->started_ms = now;
    slot->eof = false;
    slot->exited = false;
    slot->killed_for = S_KILLED_NONE;
    slot->killed_after_ms = 0;
    slot->peak_rss_kb = 0;
    slot->cpu_base_us = 0;
    slot->recycling = false;
    slot->revoked = false;
    slot->revoke_kill_us = 0;
    slot->polling_write = false;
    zmq_pollitem_t item = {NULL, child_fd (slot->child), ZMQ_POLLIN, 0};
    int rc = zloop_poller (self->loop, &item, s_on_child_read, slot);
    assert (rc == 0);
    zloop_poller_set_tolerant (self->loop, &item);
    if (self->config->verbose)
        zsys_debug ("worker: started child %d", (int)child_pid (slot->child));
}

static void s_assign (node_t *self);

//  Writes a task to a slot's child; a task written at once that starts
//  now no longer needs its input. A task sent to run next keeps it until
//  it starts (it goes back to the queue if the child dies first).
static void
s_send_task (node_t *self, s_slot_t *slot, s_task_t *task, bool starts)
{
    int rc =
        child_send (slot->child, task->id, task->attempt, task->handler,
                    task->items, self->max_payload, zframe_data (task->payload),
                    zframe_size (task->payload));
    if (rc == CHILD_AGAIN) {
        zmq_pollitem_t item = {NULL, child_wfd (slot->child), ZMQ_POLLOUT, 0};
        rc = zloop_poller (self->loop, &item, s_on_child_write, slot);
        assert (rc == 0);
        zloop_poller_set_tolerant (self->loop, &item);
        slot->polling_write = true;
        slot->writing = task;
    }
    else if (starts)
        //  Written (or the child is dying, and its reaping reports the
        //  task): the input is not needed any more
        zframe_destroy (&task->payload);
    if (self->config->verbose)
        zsys_debug ("worker: task %" PRIu64 "#%" PRIu32 " (%s) -> child %d%s",
                    task->id, task->attempt,
                    s_handler_name (self, task->handler),
                    (int)child_pid (slot->child), starts ? "" : ", next");
}

//  Gives a task to an idle child.
static void
s_start_task (node_t *self, s_slot_t *slot, s_task_t *task)
{
    slot->task = task;
    slot->peak_rss_kb = 0;
    task->started_us = s_now_us ();
    s_send_task (self, slot, task, true);
}

//  SIGTERM to the group of the slot's child for a revoked task, SIGKILL
//  after the grace period.
static void
s_revoke_running (node_t *self, s_slot_t *slot)
{
    zsys_info ("worker: broker revoked task %" PRIu64 "#%" PRIu32
               "; SIGTERM to child %d and its process group",
               slot->task->id, slot->task->attempt,
               (int)child_pid (slot->child));
    slot->revoked = true;
    slot->revoke_kill_us =
        s_now_us () + (int64_t)self->config->kill_grace_ms * 1000;
    child_terminate (slot->child);
}

//  True while the slot's child may take tasks.
static bool
s_slot_healthy (node_t *self, s_slot_t *slot)
{
    return slot->child && !slot->eof && !slot->exited
           && slot->killed_for == S_KILLED_NONE && !slot->recycling
           && !slot->revoked && !s_slot_retiring (self, slot);
}

//  Ends the poll of a slot's child for writing, whose write (of a task
//  that will not run there) is abandoned.
static void
s_slot_abandon_write (node_t *self, s_slot_t *slot)
{
    if (slot->polling_write) {
        zmq_pollitem_t item = {NULL, child_wfd (slot->child), ZMQ_POLLOUT, 0};
        zloop_poller_end (self->loop, &item);
        slot->polling_write = false;
    }
    slot->writing = NULL;
}

//  The running task ended: the first task sent to run after it starts,
//  or, when the child will not run them (killed, dying, retiring), all of
//  them go back to the head of the queue, in order, with their inputs.
//  While a child that ended by itself is drained, its outcomes say what
//  it ran: the next task is the one it ran next.
static void
s_start_next (node_t *self, s_slot_t *slot)
{
    if (slot->queued_count == 0)
        return;
    bool ran_on = slot->draining && slot->killed_for == S_KILLED_NONE
                  && !slot->revoked && !slot->recycling;
    if (!s_slot_healthy (self, slot) && !ran_on) {
        for (size_t i = slot->queued_count; i-- > 0;) {
            s_task_t *task = slot->queued[i];
            if (slot->writing == task)
                s_slot_abandon_write (self, slot);
            if (task->skip_asked || task->revoked)
                //  A ghost (its copy runs elsewhere), or revoked: it must
                //  not run, and is not reported
                s_task_destroy (self, &task);
            else
                zlistx_add_start (self->queue, task);
        }
        slot->queued_count = 0;
        return;
    }
    s_task_t *next = slot->queued[0];
    slot->queued_count--;
    memmove (&slot->queued[0], &slot->queued[1],
             slot->queued_count * sizeof slot->queued[0]);
    slot->task = next;
    slot->peak_rss_kb = 0;
    next->started_us = s_now_us ();
    if (slot->writing != next)
        zframe_destroy (&next->payload);
    if (next->revoked && !slot->draining)
        s_revoke_running (self, slot);
}

//  Asks a slot's child not to start a task sent ahead, which becomes a
//  ghost: never reported, dropped when the child skips it or runs it.
//  Nothing may be being written to the child.
static void
s_skip_queued (node_t *self, s_slot_t *slot, s_task_t *task)
{
    int rc = child_skip (slot->child, task->id, task->attempt);
    task->skip_asked = true;
    //  A ghost is no task of the node's: its copy, if any, is
    s_unhold (self, task);
    if (rc == CHILD_AGAIN) {
        zmq_pollitem_t item = {NULL, child_wfd (slot->child), ZMQ_POLLOUT, 0};
        rc = zloop_poller (self->loop, &item, s_on_child_write, slot);
        assert (rc == 0);
        zloop_poller_set_tolerant (self->loop, &item);
        slot->polling_write = true;
    }
}

//  Tasks sent to a child to run next must not wait long behind a long
//  one while another child idles: when a child is idle and nothing waits
//  here, each child whose task has run longer than S_PIPELINE_TASK_US is
//  asked to skip those sent after it, and a copy of each goes back to the
//  queue for the idle children. The child's own become ghosts, never
//  reported: skipped, or (if the child had just started one) run for
//  nothing, which execution at least once allows.
static void
s_unblock (node_t *self)
{
    if (zlistx_size (self->queue))
        return;
    size_t idle = 0;
    for (size_t i = 0; i < self->slot_count; i++)
        idle += s_slot_idle (self, &self->slots[i]);
    int64_t now_us = s_now_us ();
    for (size_t i = 0; i < self->slot_count && idle > 0; i++) {
        s_slot_t *slot = &self->slots[i];
        if (!slot->task || now_us - slot->task->started_us < S_PIPELINE_TASK_US
            || !s_slot_healthy (self, slot))
            continue;
        for (size_t q = 0; q < slot->queued_count && idle > 0; q++) {
            s_task_t *next = slot->queued[q];
            //  A revoked one stays: its child is killed when it starts it
            if (next->skip_asked || next->revoked
                || child_writing (slot->child))
                continue;
            s_task_t *copy = (s_task_t *)malloc (sizeof *copy);
            assert (copy);
            *copy = *next;
            next->payload = NULL; //  written to the child: the copy takes it
            if (id_map_lookup (self->held, copy->id) == next)
                id_map_set (self->held, copy->id, copy);
            s_skip_queued (self, slot, next);
            zlistx_add_end (self->queue, copy);
            idle--;
            zsys_info ("worker: task %" PRIu64 "#%" PRIu32
                       " waited behind a long one on child %d: it runs on an "
                       "idle child instead",
                       copy->id, copy->attempt, (int)child_pid (slot->child));
        }
    }
}

//  How many tasks a busy child is sent ahead: none while tasks are long
//  (or the lookahead is not automatic), else about S_PIPELINE_COVER_US of
//  them, at least one.
static size_t
s_pipeline_depth (node_t *self)
{
    if (!self->config->lookahead_auto || self->task_us_average < 0
        || self->task_us_average >= S_PIPELINE_TASK_US)
        return 0;
    int64_t depth = S_PIPELINE_COVER_US / (self->task_us_average + 1);
    return depth < 1                ? 1
           : depth > S_PIPELINE_MAX ? S_PIPELINE_MAX
                                    : (size_t)depth;
}

//  Runs waiting tasks on idle children, oldest first; while tasks are
//  short, sends busy children the tasks to run after theirs.
static void
s_assign (node_t *self)
{
    for (size_t i = 0; i < self->slot_count && zlistx_size (self->queue); i++) {
        s_slot_t *slot = &self->slots[i];
        if (s_slot_idle (self, slot)) {
            s_task_t *task = (s_task_t *)zlistx_detach (self->queue, NULL);
            s_start_task (self, slot, task);
        }
    }
    size_t depth = s_pipeline_depth (self);
    uint32_t limit = self->config->max_tasks_per_child;
    int64_t now_us = depth ? s_now_us () : 0;
    //  One task ahead per child per round, so that they share the queue
    for (bool sent = true; sent && depth && zlistx_size (self->queue);) {
        sent = false;
        for (size_t i = 0; i < self->slot_count && zlistx_size (self->queue);
             i++) {
            s_slot_t *slot = &self->slots[i];
            size_t queued = slot->queued_count;
            //  Not behind a task that has turned out long
            if (slot->task && queued < depth && !slot->task->skip_asked
                && now_us - slot->task->started_us < S_PIPELINE_TASK_US
                && (queued == 0 || !slot->queued[queued - 1]->skip_asked)
                && s_slot_healthy (self, slot) && !child_writing (slot->child)
                && child_sent (slot->child) < CHILD_MAX_TASKS
                && (!limit || slot->tasks_run + 1 + queued < limit)) {
                s_task_t *task = (s_task_t *)zlistx_detach (self->queue, NULL);
                slot->queued[slot->queued_count++] = task;
                s_send_task (self, slot, task, false);
                sent = true;
            }
        }
    }
    if (zlistx_size (self->queue) == 0) {
        s_unblock (self);
        for (size_t i = 0; i < self->slot_count && zlistx_size (self->queue);
             i++)
            if (s_slot_idle (self, &self->slots[i])) {
                s_task_t *task = (s_task_t *)zlistx_detach (self->queue, NULL);
                s_start_task (self, &self->slots[i], task);
            }
    }
}

//  Queues a FAIL for the broker.
static void
s_fail_add (node_t *self, s_task_t *task, int32_t code, const char *reason,
            int64_t elapsed_us, uint64_t cpu_us, int32_t signal,
            int32_t exit_status, uint64_t max_rss_kb)
{
    s_fail_t *fail = (s_fail_t *)zmalloc (sizeof *fail);
    assert (fail);
    fail->id = task->id;
    fail->attempt = task->attempt;
    fail->code = code;
    if (reason) {
        size_t size = strlen (reason);
        fail->reason =
            strndup (reason, size > DROVER_MAX_TEXT ? DROVER_MAX_TEXT : size);
        assert (fail->reason);
    }
    fail->elapsed_us = elapsed_us > 0 ? (uint64_t)elapsed_us : 0;
    fail->cpu_us = cpu_us;
    fail->signal = signal;
    fail->exit_status = exit_status;
    fail->max_rss_kb = max_rss_kb;
    zlistx_add_end (self->fails, fail);
    s_schedule_flush (self);
}

//  The hard time limit of a task: its own, or its soft limit plus the
//  node's grace period; 0: none.
static uint64_t
s_hard_limit_ms (node_t *self, s_task_t *task)
{
    if (task->timeout_ms)
        return task->timeout_ms;
    if (!task->soft_timeout_ms)
        return 0;
    uint64_t grace = self->config->kill_grace_ms;
    return task->soft_timeout_ms > UINT64_MAX - grace
               ? UINT64_MAX
               : task->soft_timeout_ms + grace;
}

//  The code of an attempt the supervisor stopped for a limit.
static int32_t
s_killed_code (s_slot_t *slot)
{
    return slot->killed_for == S_KILLED_MEMORY ? DROVER_EMEMLIMIT
                                               : DROVER_ETIMELIMIT;
}

//  Says which limit stopped the task, after how long, and how it ended
//  (how: a description of the end, e.g. the stderr tail).
static void
s_killed_reason (node_t *self, s_slot_t *slot, s_task_t *task, const char *how,
                 char *reason, size_t size)
{
    const char *ending = how && *how ? how : "no details";
    if (slot->killed_for == S_KILLED_SOFT)
        snprintf (reason, size,
                  "passed its soft time limit of %" PRIu64
                  " ms: SIGTERM to its process group after %" PRIu64
                  " ms; then %s",
                  task->soft_timeout_ms, slot->killed_after_ms, ending);
    else if (slot->killed_for == S_KILLED_HARD && task->timeout_ms)
        snprintf (reason, size,
                  "passed its hard time limit of %" PRIu64
                  " ms: SIGKILL to its process group after %" PRIu64
                  " ms; then %s",
                  task->timeout_ms, slot->killed_after_ms, ending);
    else if (slot->killed_for == S_KILLED_HARD)
        snprintf (reason, size,
                  "passed its soft time limit of %" PRIu64
                  " ms and the grace period of %" PRIu32
                  " ms (--kill-grace-ms) without ending: SIGKILL to its "
                  "process group after %" PRIu64 " ms; then %s",
                  task->soft_timeout_ms, self->config->kill_grace_ms,
                  slot->killed_after_ms, ending);
    else
        snprintf (reason, size,
                  "used %" PRIu64 " kB of resident memory, over the limit "
                  "of %" PRIu64 " kB (--max-memory-per-child): SIGKILL to "
                  "its process group after %" PRIu64 " ms; then %s",
                  slot->peak_rss_kb, self->config->max_memory_kb,
                  slot->killed_after_ms, ending);
}

//  Learns a run time for the automatic lookahead: an exponential moving
//  average with weight 1/8, so a change of workload shows in a few tasks.
static void
s_learn_run_time (node_t *self, int64_t elapsed_us)
{
    if (elapsed_us < 0)
        elapsed_us = 0;
    if (self->task_us_average < 0)
        self->task_us_average = elapsed_us;
    else
        self->task_us_average += (elapsed_us - self->task_us_average) / 8;
}

//  A child delivered the outcome of its task.
static void
s_finish (node_t *self, s_slot_t *slot, child_outcome_t *outcome)
{
    s_task_t *task = slot->task;
    assert (task);
    slot->task = NULL;
    slot->tasks_run++;
    slot->backoff_ms = 0;
    slot->cpu_base_us = outcome->cpu_total_us;
    int64_t elapsed = s_now_us () - task->started_us;
    s_learn_run_time (self, elapsed);
    uint64_t rss = outcome->max_rss_kb > slot->peak_rss_kb ? outcome->max_rss_kb
                                                           : slot->peak_rss_kb;
    if (slot->killed_for != S_KILLED_NONE) {
        //  Whatever the handler made of the signal, the attempt failed
        //  for its limit
        char how[DROVER_MAX_TEXT + 1], reason[DROVER_MAX_TEXT + 1];
        if (outcome->code == 0)
            snprintf (how, sizeof how, "the handler finished");
        else
            snprintf (how, sizeof how, "the handler failed: %s: %s",
                      drover_strcode (outcome->code),
                      outcome->reason ? outcome->reason : "");
        s_killed_reason (self, slot, task, how, reason, sizeof reason);
        zsys_warning (
            "worker: task %" PRIu64 "#%" PRIu32 " (%s) on child %d: %.300s",
            task->id, task->attempt, s_handler_name (self, task->handler),
            (int)child_pid (slot->child), reason);
        s_fail_add (self, task, s_killed_code (slot), reason, elapsed,
                    outcome->cpu_us, outcome->signal, outcome->exit_status,
                    rss);
        //  The child is replaced, and whatever the task left running in
        //  its process group goes with it
        if (!slot->exited)
            child_kill (slot->child);
    }
    else if (outcome->code == 0) {
        if (self->config->verbose)
            zsys_debug ("worker: task %" PRIu64 "#%" PRIu32
                        " (%s) done on child %d in %" PRId64 " us",
                        task->id, task->attempt,
                        s_handler_name (self, task->handler),
                        (int)child_pid (slot->child), elapsed);
        results_add (self->results, task->id, task->attempt, &outcome->payload,
                     (uint64_t)elapsed, outcome->cpu_us, rss);
    }
    else {
        zsys_info ("worker: task %" PRIu64 "#%" PRIu32
                   " (%s) failed on child %d: %s: %.200s",
                   task->id, task->attempt,
                   s_handler_name (self, task->handler),
                   (int)child_pid (slot->child), drover_strcode (outcome->code),
                   outcome->reason ? outcome->reason : "");
        s_fail_add (self, task, outcome->code, outcome->reason, elapsed,
                    outcome->cpu_us, outcome->signal, outcome->exit_status,
                    rss);
    }
    uint64_t limit = self->config->max_memory_kb;
    if (limit && slot->killed_for == S_KILLED_NONE && !slot->exited
        && outcome->child_max_rss_kb > limit) {
        //  The task finished between two checks, but left the child past
        //  the limit: a fresh child takes the next task
        zsys_info ("worker: child %d reached %" PRIu64
                   " kB running task %" PRIu64 "#%" PRIu32
                   ", over the limit of %" PRIu64 " kB; replacing it",
                   (int)child_pid (slot->child), outcome->child_max_rss_kb,
                   task->id, task->attempt, limit);
        slot->recycling = true;
        child_kill (slot->child);
    }
    s_task_destroy (self, &task);
    s_start_next (self, slot);
    s_assign (self);
    s_schedule_flush (self);
}

//  Reads what the child sent; at end of file, stops polling it.
static void
s_child_read (node_t *self, s_slot_t *slot)
{
    while (!slot->eof) {
        child_outcome_t outcome;
        int rc = child_receive (slot->child, &outcome);
        if (rc == CHILD_OUTCOME) {
            if (slot->task
                && (slot->task->skip_asked
                    || (slot->draining && slot->task->revoked))) {
                //  A ghost the child had started: its copy reports; or a
                //  revoked task a dead child ran before we could stop it
                s_task_t *ghost = slot->task;
                slot->task = NULL;
                slot->tasks_run++;
                slot->cpu_base_us = outcome.cpu_total_us;
                s_task_destroy (self, &ghost);
                s_start_next (self, slot);
                s_assign (self);
            }
            else if (slot->task && !slot->revoked)
                s_finish (self, slot, &outcome);
            else if (slot->task && slot->revoke_kill_us) {
                //  A revoked task ended after its SIGTERM: its outcome is
                //  not reported; the child and its group go now
                slot->revoke_kill_us = 0;
                child_kill (slot->child);
            }
            child_outcome_reset (&outcome);
            continue;
        }
        if (rc == CHILD_SKIPPED) {
            //  The ghost was not started: its copy runs elsewhere
            s_task_t *task = slot->task;
            if (task && task->skip_asked && task->id == outcome.id
                && task->attempt == outcome.attempt) {
                slot->task = NULL;
                s_task_destroy (self, &task);
                s_start_next (self, slot);
                s_assign (self);
                s_schedule_flush (self);
                continue;
            }
            rc = CHILD_EPROTO; //  not the task we think it runs
        }
        if (rc == CHILD_AGAIN)
            return;
        if (rc == CHILD_EPROTO) {
            zsys_error ("worker: child %d sent a malformed frame; killing it",
                        (int)child_pid (slot->child));
            child_kill (slot->child);
        }
        s_slot_stop_polling (self, slot);
        slot->eof = true;
    }
}

static int
s_on_child_read (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    s_slot_t *slot = (s_slot_t *)arg;
    s_child_read (slot->node, slot);
    return slot->node->stopping ? -1 : 0;
}

static int
s_on_child_write (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)item;
    s_slot_t *slot = (s_slot_t *)arg;
    int rc = child_flush (slot->child);
    if (rc != CHILD_AGAIN) {
        zmq_pollitem_t write_item = {NULL, child_wfd (slot->child), ZMQ_POLLOUT,
                                     0};
        zloop_poller_end (loop, &write_item);
        slot->polling_write = false;
        //  A running task's input is not needed any more; one sent to run
        //  next keeps it until it starts
        if (slot->writing && slot->writing == slot->task)
            zframe_destroy (&slot->writing->payload);
        slot->writing = NULL;
        s_assign (slot->node);
    }
    return slot->node->stopping ? -1 : 0;
}

//  Describes how a process ended, for logs.
static void
s_describe_exit (int status, char *text, size_t size)
{
    if (WIFSIGNALED (status))
        snprintf (text, size, "killed by signal %d (%s)", WTERMSIG (status),
                  strsignal (WTERMSIG (status)));
    else
        snprintf (text, size, "exited with status %d", WEXITSTATUS (status));
}

//  CPU time, user + system, in a rusage, in microseconds.
static uint64_t
s_rusage_cpu_us (const struct rusage *usage)
{
    return (uint64_t)usage->ru_utime.tv_sec * 1000000
           + (uint64_t)usage->ru_utime.tv_usec
           + (uint64_t)usage->ru_stime.tv_sec * 1000000
           + (uint64_t)usage->ru_stime.tv_usec;
}

//  A child was reaped: report its task if it had one, start another.
static void
s_child_gone (node_t *self, s_slot_t *slot, int status,
              const struct rusage *usage)
{
    slot->exited = true;
    bool busy = slot->task != NULL;
    //  The outcomes of its last tasks may still be in the channel; the
    //  task left running after them is the one it died on
    slot->draining = true;
    s_child_read (self, slot);
    slot->draining = false;
    bool killed =
        slot->killed_for != S_KILLED_NONE || slot->revoked || slot->recycling;
    pid_t pid = child_pid (slot->child);
    char how[96];
    s_describe_exit (status, how, sizeof how);
    int64_t now = s_now_ms ();
    s_task_t *task = slot->task;
    slot->task = NULL;
    if (task && task->skip_asked)
        s_task_destroy (self, &task); //  a ghost: its copy reports
    if (task && (slot->revoked || task->revoked))
        zsys_info ("worker: task %" PRIu64 "#%" PRIu32
                   " (%s) revoked; child %d killed",
                   task->id, task->attempt,
                   s_handler_name (self, task->handler), (int)pid);
    else if (task) {
        int64_t elapsed = s_now_us () - task->started_us;
        s_learn_run_time (self, elapsed);
        uint64_t rss = usage->ru_maxrss > 0 ? (uint64_t)usage->ru_maxrss : 0;
        if (slot->peak_rss_kb > rss)
            rss = slot->peak_rss_kb;
        //  The child's CPU time since its last outcome, and that of the
        //  commands of its group that are already orphaned zombies (a
        //  killed group dies at once; later ones are reaped unattributed)
        uint64_t cpu = s_rusage_cpu_us (usage);
        cpu = cpu > slot->cpu_base_us ? cpu - slot->cpu_base_us : 0;
        struct rusage orphan;
        memset (&orphan, 0, sizeof orphan);
        while (wait4 (-pid, NULL, WNOHANG, &orphan) > 0) {
            cpu += s_rusage_cpu_us (&orphan);
            memset (&orphan, 0, sizeof orphan);
        }
        int32_t signal = WIFSIGNALED (status) ? WTERMSIG (status) : 0;
        int32_t exit_status = WIFEXITED (status) ? WEXITSTATUS (status) : 0;
        char reason[DROVER_MAX_TEXT + 1];
        if (slot->killed_for != S_KILLED_NONE) {
            char ending[128];
            snprintf (ending, sizeof ending, "child %d %s", (int)pid, how);
            s_killed_reason (self, slot, task, ending, reason, sizeof reason);
            zsys_warning ("worker: task %" PRIu64 "#%" PRIu32 " (%s): %s",
                          task->id, task->attempt,
                          s_handler_name (self, task->handler), reason);
            s_fail_add (self, task, s_killed_code (slot), reason, elapsed, cpu,
                        signal, exit_status, rss);
        }
        else {
            snprintf (reason, sizeof reason, "child %d %s while running it",
                      (int)pid, how);
            zsys_warning ("worker: task %" PRIu64 "#%" PRIu32
                          " (%s) crashed: child %d %s (peak %" PRIu64 " kB)",
                          task->id, task->attempt,
                          s_handler_name (self, task->handler), (int)pid, how,
                          rss);
            s_fail_add (self, task, DROVER_ECRASHED, reason, elapsed, cpu,
                        signal, exit_status, rss);
        }
    }
    else {
        bool retired = (s_slot_retiring (self, slot) && WIFEXITED (status)
                        && WEXITSTATUS (status) == 0)
                       || slot->recycling;
        if (retired) {
            if (self->config->verbose)
                zsys_debug ("worker: child %d retired after %" PRIu64 " tasks",
                            (int)pid, slot->tasks_run);
        }
        else if (!killed && !self->stopping) {
            zsys_warning ("worker: child %d %s while idle", (int)pid, how);
            if (!busy && now - slot->started_ms < S_QUICK_DEATH_MS) {
                //  A child that dies at start-up must not make us fork in
                //  a loop
                slot->backoff_ms =
                    slot->backoff_ms ? (slot->backoff_ms * 2 > S_BACKOFF_MAX_MS
                                            ? S_BACKOFF_MAX_MS
                                            : slot->backoff_ms * 2)
                                     : S_BACKOFF_MIN_MS;
                slot->restart_at_ms = now + slot->backoff_ms;
                zsys_warning ("worker: restarting it in %u ms",
                              slot->backoff_ms);
            }
        }
    }
    s_task_destroy (self, &task);
    s_start_next (self, slot); //  the child is gone: back to the queue
    s_slot_stop_polling (self, slot);
    slot->writing = NULL;
    child_destroy (&slot->child);
    if (self->stopping)
        return;
    if (!slot->restart_at_ms)
        s_slot_start (self, slot);
    s_assign (self);
    s_schedule_flush (self);
}

//  Reaps every child that ended, ours or adopted (we are a subreaper).
static void
s_reap (node_t *self)
{
    while (true) {
        int status = 0;
        struct rusage usage;
        memset (&usage, 0, sizeof usage);
        pid_t pid = wait4 (-1, &status, WNOHANG, &usage);
        if (pid <= 0)
            return;
        for (size_t i = 0; i < self->slot_count; i++) {
            s_slot_t *slot = &self->slots[i];
            if (slot->child && child_pid (slot->child) == pid) {
                s_child_gone (self, slot, status, &usage);
                break;
            }
        }
    }
}

//  Kills every child and waits for them.
static void
s_kill_children (node_t *self)
{
    for (size_t i = 0; i < self->slot_count; i++)
        if (self->slots[i].child)
            child_kill (self->slots[i].child);
    for (size_t i = 0; i < self->slot_count; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->child) {
            int status;
            while (waitpid (child_pid (slot->child), &status, 0) < 0
                   && errno == EINTR)
                ;
            s_slot_stop_polling (self, slot);
            slot->writing = NULL;
            child_destroy (&slot->child);
        }
        s_task_destroy (self, &slot->task);
        while (slot->queued_count)
            s_task_destroy (self, &slot->queued[--slot->queued_count]);
    }
    //  Orphans we adopted
    while (waitpid (-1, NULL, WNOHANG) > 0)
        ;
}

//  --------------------------------------------------------------------------
//  Sessions

static int s_on_broker (zloop_t *loop, zsock_t *sock, void *arg);
static int s_on_sink (zloop_t *loop, zsock_t *sock, void *arg);

static void
s_send_hello (node_t *self)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HELLO);
    msg.role = "node";
    msg.name = self->config->name;
    msg.children = self->config->children;
    msg.lookahead = self->lookahead_max;
    msg.handlers = self->handler_names;
    msg.handler_count = self->config->handler_count;
    msg.queues = (const char **)self->config->queues;
    msg.queue_count = self->config->queue_count;
    msg.chunks = true;
    //  Until the connection is up the socket takes nothing (immediate):
    //  try again at the next tick, then every S_HELLO_IVL_MS
    if (s_send_broker (self, &msg) == 0)
        self->hello_sent_ms = s_now_ms ();
}

//  Sets ZeroMQ's own heartbeats and reconnect backoff on a socket before it
//  connects (libzmq reads them at connect): a PING every heartbeat_ms, the
//  connection dropped after heartbeat_ms * liveness without any traffic, so
//  a half-open TCP connection is noticed, and the peer told to do the same
//  (TTL). The session logic still decides when a peer is lost; this only
//  makes ZeroMQ reconnect instead of waiting on a dead connection.
static int
s_clamp (int64_t value, int64_t low, int64_t high)
{
    return (int)(value < low ? low : value > high ? high : value);
}

static void
s_set_connection_options (node_t *self, zsock_t *sock)
{
    int64_t expiry = (int64_t)self->heartbeat_ms * self->liveness;
    zsock_set_heartbeat_ivl (sock, (int)self->heartbeat_ms);
    //  Three expiry times: the session logic always acts first, ZeroMQ only
    //  catches a half-open connection the session logic cannot see
    zsock_set_heartbeat_timeout (sock, s_clamp (3 * expiry, 1, INT_MAX));
    //  Under 100 ms the TTL would round to 0, which means none
    zsock_set_heartbeat_ttl (sock,
                             s_clamp (3 * expiry, 100, S_ZMTP_TTL_MAX_MS));
    zsock_set_reconnect_ivl (sock, S_RECONNECT_MIN_MS);
    zsock_set_reconnect_ivl_max (
        sock, s_clamp (expiry, S_RECONNECT_MIN_MS, S_RECONNECT_MAX_MS));
}

//  Starts a new session: new socket, so a new routing id, and HELLO.
static int
s_session_start (node_t *self)
{
    if (self->broker) {
        zloop_reader_end (self->loop, self->broker);
        zsock_destroy (&self->broker);
    }
    self->welcomed = false;
    self->credit = 0;
    //  The broker releases what the old session held; tasks that have not
    //  started are not worth running twice. Running ones go on: their
    //  results go to the sink, which keeps the first.
    size_t dropped = zlistx_size (self->queue);
    while (zlistx_size (self->queue)) {
        s_task_t *task = (s_task_t *)zlistx_detach (self->queue, NULL);
        s_task_destroy (self, &task);
    }
    //  So are those sent ahead to children: they become ghosts (one being
    //  written, rarely, runs and reports)
    for (size_t i = 0; i < self->slot_count; i++) {
        s_slot_t *slot = &self->slots[i];
        for (size_t q = 0; q < slot->queued_count; q++) {
            s_task_t *task = slot->queued[q];
            if (task->skip_asked || task->revoked
                || !s_slot_healthy (self, slot) || child_writing (slot->child))
                continue;
            s_skip_queued (self, slot, task);
            dropped++;
        }
    }
    size_t stale = zlistx_size (self->fails);
    zlistx_purge (self->fails);
    if (dropped || stale)
        zsys_info ("worker: new session: dropped %zu waiting tasks and %zu "
                   "failure reports of the old one",
                   dropped, stale);

    self->broker = zsock_new (ZMQ_DEALER);
    if (!self->broker) {
        zsys_error ("worker: cannot create a socket: %s",
                    zmq_strerror (zmq_errno ()));
        return DROVER_ESYSTEM;
    }
    zsock_set_linger (self->broker, 0);
    //  Send nothing into the void while disconnected: HELLO is repeated
    zsock_set_immediate (self->broker, 1);
    zsock_set_maxmsgsize (self->broker, (int)DROVER_MAX_PAYLOAD);
    s_set_connection_options (self, self->broker);
    if (zsock_connect (self->broker, "%s", self->config->endpoint) == -1) {
        zsys_error ("worker: cannot connect to broker '%s': %s",
                    self->config->endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&self->broker);
        return DROVER_EINVAL;
    }
    int rc = zloop_reader (self->loop, self->broker, s_on_broker, self);
    assert (rc == 0);
    zloop_reader_set_tolerant (self->loop, self->broker);
    self->broker_recv_ms = s_now_ms ();
    self->hello_sent_ms = 0;
    s_send_hello (self);
    return 0;
}

//  Ends the session and starts another; stops the node if it cannot.
static void
s_session_restart (node_t *self, const char *why)
{
    zsys_warning ("worker: %s; starting a new session with broker %s", why,
                  self->config->endpoint);
    int rc = s_session_start (self);
    if (rc) {
        self->rc = rc;
        self->stopping = true;
    }
}

static void
s_sink_connect (node_t *self, const char *endpoint)
{
    if (self->sink) {
        zloop_reader_end (self->loop, self->sink);
        zsock_destroy (&self->sink);
    }
    zstr_free (&self->sink_endpoint);
    self->sink = zsock_new (ZMQ_DEALER);
    if (!self->sink) {
        zsys_error ("worker: cannot create a socket: %s",
                    zmq_strerror (zmq_errno ()));
        return;
    }
    zsock_set_linger (self->sink, 0);
    zsock_set_maxmsgsize (self->sink, (int)DROVER_MAX_HEADER);
    s_set_connection_options (self, self->sink);
    if (zsock_connect (self->sink, "%s", endpoint) == -1) {
        zsys_error ("worker: cannot connect to sink '%s' (from the broker's "
                    "WELCOME): %s",
                    endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&self->sink);
        return;
    }
    int rc = zloop_reader (self->loop, self->sink, s_on_sink, self);
    assert (rc == 0);
    zloop_reader_set_tolerant (self->loop, self->sink);
    self->sink_endpoint = strdup (endpoint);
    assert (self->sink_endpoint);
    zsys_info ("worker: sending results to sink %s", endpoint);
    results_resend_all (self->results);
}

//  Stops the reactor: at once (code < 0: children are killed) or after a
//  drain (code 0). Says BYE to the broker if there is a session.
static void
s_stop (node_t *self, int code)
{
    if (self->stopping)
        return;
    if (code) {
        for (size_t i = 0; i < self->slot_count; i++)
            if (self->slots[i].child)
                child_kill (self->slots[i].child);
    }
    if (self->welcomed) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_BYE);
        msg.code = code ? code : DROVER_ESHUTDOWN;
        msg.reason =
            code ? "node stopped before its tasks finished" : "node drained";
        zsock_set_linger (self->broker, S_BYE_LINGER_MS);
        s_send_broker (self, &msg);
    }
    zsys_info ("worker: %s", code ? "stopped" : "drained; bye");
    self->rc = code;
    self->stopping = true;
}

static void
s_drain_start (node_t *self, const char *why)
{
    if (self->draining)
        return;
    self->draining = true;
    if (self->config->drain_timeout_ms)
        self->drain_deadline_ms =
            s_now_ms () + (int64_t)self->config->drain_timeout_ms;
    zsys_info ("worker: draining (%s): %zu tasks to finish, %zu results to "
               "deliver",
               why, s_held (self), results_size (self->results));
    if (self->welcomed) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_DRAIN);
        msg.reason = why;
        s_send_broker (self, &msg);
    }
    //  The broker drops our credit when it gets DRAIN
    self->credit = 0;
    s_schedule_flush (self);
}

static bool
s_drained (node_t *self)
{
    return s_held (self) == 0 && results_size (self->results) == 0
           && zlistx_size (self->fails) == 0;
}

//  --------------------------------------------------------------------------
//  Sending

static void
s_send_fails (node_t *self)
{
    while (zlistx_size (self->fails)) {
        if (!self->welcomed) {
            zsys_warning ("worker: dropping %zu failure reports: no session "
                          "with the broker",
                          zlistx_size (self->fails));
            zlistx_purge (self->fails);
            return;
        }
        size_t count = zlistx_size (self->fails);
        if (count > self->max_batch)
            count = self->max_batch;
        drover_task_t *tasks = (drover_task_t *)zmalloc (count * sizeof *tasks);
        assert (tasks);
        s_fail_t *fail = (s_fail_t *)zlistx_first (self->fails);
        for (size_t i = 0; i < count; i++) {
            tasks[i].id = fail->id;
            tasks[i].attempt = fail->attempt;
            tasks[i].code = fail->code;
            tasks[i].reason = fail->reason;
            tasks[i].node = self->config->name;
            tasks[i].elapsed_us = fail->elapsed_us;
            tasks[i].cpu_us = fail->cpu_us;
            tasks[i].signal = fail->signal;
            tasks[i].exit_status = fail->exit_status;
            tasks[i].max_rss_kb = fail->max_rss_kb;
            fail = (s_fail_t *)zlistx_next (self->fails);
        }
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_FAIL);
        msg.tasks = tasks;
        msg.task_count = count;
        int rc = s_send_broker (self, &msg);
        free (tasks);
        if (rc == DROVER_EIO)
            return; //  not connected: try again at the next tick
        for (size_t i = 0; i < count; i++) {
            void *item = zlistx_detach (self->fails, NULL);
            s_fail_destroy (&item);
        }
    }
}

//  The lookahead in force: the configured one, or the automatic one: while
//  tasks are short (a moving average under DROVER_WORKER_SHORT_TASK_MS),
//  enough tasks per child to cover S_LOOKAHEAD_COVER_US of work (the round
//  trip to the broker that brings the next ones), at least one and at most
//  S_LOOKAHEAD_PER_CHILD; none while they are long, where that round trip
//  costs nothing and a held task could wait behind a slow one. Before the
//  first outcome it is none, so a node that starts on long tasks never
//  holds more than it runs.
static uint32_t
s_lookahead (node_t *self)
{
    if (!self->config->lookahead_auto)
        return self->config->lookahead;
    int64_t average = self->task_us_average;
    if (average < 0 || average >= DROVER_WORKER_SHORT_TASK_MS * 1000)
        return 0;
    int64_t per_child = (S_LOOKAHEAD_COVER_US + average) / (average + 1);
    if (per_child < 1)
        per_child = 1;
    if (per_child > S_LOOKAHEAD_PER_CHILD)
        per_child = S_LOOKAHEAD_PER_CHILD;
    uint64_t lookahead = (uint64_t)per_child * self->slot_count;
    return lookahead < self->lookahead_max ? (uint32_t)lookahead
                                           : self->lookahead_max;
}

//  Live children plus lookahead: what the node can hold.
static size_t
s_capacity (node_t *self)
{
    size_t capacity = s_lookahead (self);
    for (size_t i = 0; i < self->slot_count; i++)
        if (self->slots[i].child)
            capacity++;
    return capacity;
}

static void
s_send_credit (node_t *self)
{
    if (!self->welcomed || !self->sink || self->draining || self->stopping)
        return;
    size_t held_results = results_size (self->results);
    size_t limit = 4 * (self->slot_count + self->lookahead_max);
    if (limit < S_MIN_RESULTS_HELD)
        limit = S_MIN_RESULTS_HELD;
    if (held_results >= limit
        || results_bytes (self->results) >= S_MAX_RESULT_OCTETS) {
        if (s_limit_pass (&self->held_log))
            zsys_warning ("worker: asking for no tasks while %zu results wait "
                          "for sink %s",
                          held_results, self->sink_endpoint);
        return;
    }
    size_t capacity = s_capacity (self);
    size_t used = s_held (self) + self->credit;
    if (used >= capacity)
        return;
    size_t want = capacity - used;
    //  Automatic lookahead: credit in batches, when half of the lookahead
    //  is free, or at once when a child would otherwise wait (nothing
    //  queued here and nothing asked for), so many short tasks do not make
    //  a CREDIT and a DISPATCH each. A fixed lookahead asks at once.
    size_t batch =
        self->config->lookahead_auto ? (s_lookahead (self) + 1) / 2 : 1;
    bool starving = zlistx_size (self->queue) == 0 && self->credit == 0;
    if (!starving && want < batch)
        return;
    if (want > DROVER_MAX_CREDIT)
        want = DROVER_MAX_CREDIT;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_CREDIT);
    msg.credit = (uint32_t)want;
    if (s_send_broker (self, &msg) == 0)
        self->credit += (uint32_t)want;
}

static void
s_flush (node_t *self)
{
    if (self->stopping)
        return;
    s_send_fails (self);
    if (self->sink)
        results_send (self->results, self->sink, self->config->name,
                      self->max_batch, s_now_ms (),
                      (int64_t)self->heartbeat_ms * self->liveness);
    s_send_credit (self);
    if (self->draining && s_drained (self))
        s_stop (self, 0);
}

//  --------------------------------------------------------------------------
//  Receiving

static void
s_malformed (node_t *self, const char *peer, drover_packet_t *packet, int rc)
{
    self->malformed++;
    if (s_limit_pass (&self->malformed_log)) {
        zsys_warning ("worker: dropped a malformed message from %s: %s: %s "
                      "(%" PRIu64 " so far)",
                      peer, drover_strcode (rc),
                      packet ? drover_packet_error (packet) : "",
                      self->malformed);
    }
}

static void
s_on_welcome (node_t *self, drover_msg_t *msg)
{
    bool restarted = self->instance && strcmp (self->instance, msg->instance);
    if (restarted) {
        zsys_warning ("worker: broker %s restarted (instance %s, was %s)",
                      self->config->endpoint, msg->instance, self->instance);
        //  A new broker knows nothing of our credit or our waiting tasks,
        //  and a sink it embeds may have lost what it did not store
        self->credit = 0;
        results_resend_all (self->results);
        while (zlistx_size (self->queue)) {
            s_task_t *task = (s_task_t *)zlistx_detach (self->queue, NULL);
            s_task_destroy (self, &task);
        }
    }
    zstr_free (&self->instance);
    self->instance = strdup (msg->instance);
    assert (self->instance);
    self->heartbeat_ms = msg->heartbeat_ms < 10        ? 10
                         : msg->heartbeat_ms > 3600000 ? 3600000
                                                       : msg->heartbeat_ms;
    self->liveness = msg->liveness < 1      ? 1
                     : msg->liveness > 1000 ? 1000
                                            : msg->liveness;
    self->max_payload =
        msg->max_payload && msg->max_payload < DROVER_MAX_PAYLOAD
            ? msg->max_payload
            : DROVER_MAX_PAYLOAD;
    self->max_batch = msg->max_batch ? msg->max_batch : 1;
    if (!self->welcomed || restarted)
        zsys_info ("worker: %s joined broker %s (instance %s, heartbeat %u ms "
                   "x %u) with %zu children",
                   self->config->name, self->config->endpoint, msg->instance,
                   self->heartbeat_ms, self->liveness, self->slot_count);
    self->welcomed = true;
    if (msg->endpoint
        && (!self->sink_endpoint
            || strcmp (msg->endpoint, self->sink_endpoint)))
        s_sink_connect (self, msg->endpoint);
    else if (!msg->endpoint && !self->sink_endpoint)
        zsys_warning ("worker: broker %s has no sink yet; waiting for it",
                      self->config->endpoint);
    if (self->draining) {
        //  Drained before this session: tell the broker again
        drover_msg_t drain;
        drover_msg_init (&drain, DROVER_DRAIN);
        drain.reason = "node is draining";
        s_send_broker (self, &drain);
    }
    s_schedule_flush (self);
}

//  True when the node holds attempt (id, attempt), running or waiting (not
//  a ghost). The map keeps an id's newest attempt only: a DISPATCH of an
//  older attempt than one held would not be found, and the broker never
//  sends one (each dispatch is a new, higher attempt).
static bool
s_holds (node_t *self, uint64_t id, uint32_t attempt)
{
    s_task_t *task = (s_task_t *)id_map_lookup (self->held, id);
    return task && task->attempt == attempt;
}

//  Takes a task from a DISPATCH: queued, or failed at once.
static void
s_on_dispatch_task (node_t *self, drover_packet_t *packet, size_t index)
{
    drover_task_t *item = &drover_packet_msg (packet)->tasks[index];
    if (self->credit > 0)
        self->credit--;
    else if (s_limit_pass (&self->error_log))
        zsys_warning ("worker: broker %s sent task %" PRIu64
                      " beyond our credit",
                      self->config->endpoint, item->id);
    if (s_holds (self, item->id, item->attempt)) {
        zsys_warning ("worker: task %" PRIu64 "#%" PRIu32
                      " dispatched twice; ignored",
                      item->id, item->attempt);
        return;
    }
    s_task_t *task = (s_task_t *)zmalloc (sizeof *task);
    assert (task);
    task->id = item->id;
    task->attempt = item->attempt;
    task->timeout_ms = item->timeout_ms;
    task->soft_timeout_ms = item->soft_timeout_ms;
    task->items = item->items;
    task->payload = drover_packet_take_payload (packet, index);
    assert (task->payload);

    size_t handler;
    for (handler = 0; handler < self->config->handler_count; handler++)
        if (!strcmp (self->config->handlers[handler].name, item->handler))
            break;
    char reason[DROVER_MAX_NAME * 2 + 64];
    if (handler == self->config->handler_count) {
        snprintf (reason, sizeof reason, "no handler '%s' on node %s",
                  item->handler, self->config->name);
        zsys_warning ("worker: task %" PRIu64 "#%" PRIu32 ": %s", item->id,
                      item->attempt, reason);
        s_fail_add (self, task, DROVER_EHANDLER, reason, 0, 0, 0, 0, 0);
        s_task_destroy (self, &task);
        return;
    }
    task->handler = (uint32_t)handler;
    if (s_held (self) >= self->slot_count + self->lookahead_max) {
        snprintf (reason, sizeof reason,
                  "node %s is full: the broker sent more tasks than credit",
                  self->config->name);
        zsys_warning ("worker: task %" PRIu64 "#%" PRIu32 ": %s", item->id,
                      item->attempt, reason);
        s_fail_add (self, task, DROVER_EFULL, reason, 0, 0, 0, 0, 0);
        s_task_destroy (self, &task);
        return;
    }
    id_map_set (self->held, task->id, task);
    zlistx_add_end (self->queue, task);
}

static void
s_on_dispatch (node_t *self, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    if (!self->welcomed) {
        if (s_limit_pass (&self->error_log))
            zsys_warning ("worker: dropped DISPATCH from broker %s before "
                          "WELCOME",
                          self->config->endpoint);
        return;
    }
    for (size_t i = 0; i < msg->task_count; i++)
        s_on_dispatch_task (self, packet, i);
    s_assign (self);
    s_schedule_flush (self);
}

static void
s_on_revoke (node_t *self, drover_msg_t *msg)
{
    for (size_t i = 0; i < msg->task_count; i++) {
        uint64_t id = msg->tasks[i].id;
        uint32_t attempt = msg->tasks[i].attempt;
        bool found = false;
        for (size_t s = 0; s < self->slot_count && !found; s++) {
            s_slot_t *slot = &self->slots[s];
            //  Ghosts are not the task: their copies are
            if (slot->task && !slot->task->skip_asked && slot->task->id == id
                && slot->task->attempt == attempt) {
                found = true;
                if (!slot->revoked)
                    s_revoke_running (self, slot);
            }
            for (size_t q = 0; q < slot->queued_count && !found; q++) {
                s_task_t *next = slot->queued[q];
                if (next->skip_asked || next->id != id
                    || next->attempt != attempt)
                    continue;
                //  It is in the child's channel: the child is killed when
                //  it starts it
                found = true;
                next->revoked = true;
                zsys_info ("worker: broker revoked task %" PRIu64 "#%" PRIu32
                           ", sent to child %d to run next",
                           id, attempt, (int)child_pid (slot->child));
            }
        }
        for (s_task_t *task = (s_task_t *)zlistx_first (self->queue);
             task && !found; task = (s_task_t *)zlistx_next (self->queue))
            if (task->id == id && task->attempt == attempt) {
                found = true;
                zsys_info ("worker: broker revoked task %" PRIu64 "#%" PRIu32
                           " before it started",
                           id, attempt);
                zlistx_detach_cur (self->queue);
                s_task_destroy (self, &task);
            }
        if (!found && self->config->verbose)
            zsys_debug ("worker: REVOKE of task %" PRIu64 "#%" PRIu32
                        ", which we do not run",
                        id, attempt);
    }
    s_schedule_flush (self);
}

//  Handles one message from the broker.
static void
s_on_broker_msg (node_t *self, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    switch (msg->command) {
        case DROVER_WELCOME: s_on_welcome (self, msg); break;
        case DROVER_HEARTBEAT: break;
        case DROVER_DISPATCH: s_on_dispatch (self, packet); break;
        case DROVER_REVOKE: s_on_revoke (self, msg); break;
        case DROVER_DRAIN:
            s_drain_start (self, msg->reason ? msg->reason : "broker asked");
            break;
        case DROVER_BYE:
            zsys_info ("worker: broker %s said BYE: %s: %s",
                       self->config->endpoint, drover_strcode (msg->code),
                       msg->reason ? msg->reason : "");
            s_session_restart (self, msg->code == DROVER_ESTALE
                                         ? "broker does not know our session"
                                         : "broker ended our session");
            break;
        case DROVER_ERROR:
            if (s_limit_pass (&self->error_log))
                zsys_warning ("worker: broker %s refused a message: %s: %s",
                              self->config->endpoint,
                              drover_strcode (msg->code), msg->reason);
            break;
        default: s_malformed (self, "broker", packet, DROVER_ECOMMAND); break;
    }
}

static int
s_on_broker (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    node_t *self = (node_t *)arg;
    for (int i = 0; i < S_READ_BURST && !self->stopping; i++) {
        //  The session may have been replaced by the previous message
        if (sock != self->broker
            || (i > 0 && !(zsock_events (sock) & ZMQ_POLLIN)))
            break;
        drover_packet_t *packet;
        int rc = drover_packet_recv (sock, false, &packet);
        if (rc == DROVER_EIO)
            break;
        self->broker_recv_ms = s_now_ms ();
        if (rc)
            s_malformed (self, "broker", packet, rc);
        else {
            if (self->config->verbose)
                zsys_debug (
                    "worker: <- broker %s (%zu items)",
                    drover_command_name (drover_packet_msg (packet)->command),
                    drover_packet_msg (packet)->task_count);
            s_on_broker_msg (self, packet);
        }
        drover_packet_destroy (&packet);
    }
    return self->stopping ? -1 : 0;
}

static int
s_on_sink (zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    node_t *self = (node_t *)arg;
    for (int i = 0; i < S_READ_BURST && !self->stopping; i++) {
        if (i > 0 && !(zsock_events (sock) & ZMQ_POLLIN))
            break;
        drover_packet_t *packet;
        int rc = drover_packet_recv (sock, false, &packet);
        if (rc == DROVER_EIO)
            break;
        drover_msg_t *msg = rc ? NULL : drover_packet_msg (packet);
        if (rc)
            s_malformed (self, "sink", packet, rc);
        else if (msg->command == DROVER_STORED) {
            if (self->config->verbose)
                zsys_debug ("worker: <- sink STORED (%zu items)",
                            msg->task_count);
            for (size_t t = 0; t < msg->task_count; t++)
                if (!results_stored (self->results, msg->tasks[t].id,
                                     msg->tasks[t].attempt, msg->tasks[t].code,
                                     s_now_ms ())
                    && self->config->verbose)
                    zsys_debug ("worker: STORED for task %" PRIu64 "#%" PRIu32
                                ", which we do not hold",
                                msg->tasks[t].id, msg->tasks[t].attempt);
            s_schedule_flush (self);
        }
        else if (msg->command == DROVER_ERROR) {
            if (s_limit_pass (&self->error_log))
                zsys_warning ("worker: sink %s refused a message: %s: %s",
                              self->sink_endpoint, drover_strcode (msg->code),
                              msg->reason);
        }
        else
            s_malformed (self, "sink", packet, DROVER_ECOMMAND);
        drover_packet_destroy (&packet);
    }
    return self->stopping ? -1 : 0;
}

static int
s_on_signal (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void)loop;
    (void)item;
    node_t *self = (node_t *)arg;
    struct signalfd_siginfo info;
    bool reap = false;
    while (read (self->signal_fd, &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGCHLD)
            reap = true;
        else if (!self->draining)
            s_drain_start (self, strsignal ((int)info.ssi_signo));
        else {
            zsys_warning ("worker: %s again: stopping now",
                          strsignal ((int)info.ssi_signo));
            s_stop (self, DROVER_ESHUTDOWN);
        }
    }
    if (reap)
        s_reap (self);
    return self->stopping ? -1 : 0;
}

//  Sends the soft limit's SIGTERM or the hard limit's SIGKILL to a busy
//  child's process group when their time has come.
static void
s_check_time (node_t *self, s_slot_t *slot, int64_t now_us)
{
    s_task_t *task = slot->task;
    uint64_t elapsed_ms = now_us > task->started_us
                              ? (uint64_t)(now_us - task->started_us) / 1000
                              : 0;
    uint64_t hard = s_hard_limit_ms (self, task);
    if (hard && elapsed_ms >= hard) {
        zsys_warning ("worker: task %" PRIu64 "#%" PRIu32
                      " (%s) passed its %s time limit after %" PRIu64
                      " ms; killing child %d and its process group",
                      task->id, task->attempt,
                      s_handler_name (self, task->handler),
                      task->timeout_ms ? "hard" : "soft + grace", elapsed_ms,
                      (int)child_pid (slot->child));
        slot->killed_for = S_KILLED_HARD;
        slot->killed_after_ms = elapsed_ms;
        child_kill (slot->child);
    }
    else if (slot->killed_for == S_KILLED_NONE && task->soft_timeout_ms
             && elapsed_ms >= task->soft_timeout_ms) {
        zsys_warning ("worker: task %" PRIu64 "#%" PRIu32
                      " (%s) passed its soft time limit of %" PRIu64
                      " ms; SIGTERM to child %d and its process group",
                      task->id, task->attempt,
                      s_handler_name (self, task->handler),
                      task->soft_timeout_ms, (int)child_pid (slot->child));
        slot->killed_for = S_KILLED_SOFT;
        slot->killed_after_ms = elapsed_ms;
        child_terminate (slot->child);
    }
}

//  A busy child's process group, and the resident memory counted for it.
typedef struct {
    pid_t pgid;      //  the child's pid, which leads the group
    s_slot_t *slot;  //  the child's slot
    uint64_t rss_kb; //  sum of the members' resident memory
} s_group_t;

static int
s_group_compare (const void *a, const void *b)
{
    pid_t left = ((const s_group_t *)a)->pgid;
    pid_t right = ((const s_group_t *)b)->pgid;
    return left < right ? -1 : left > right;
}

//  Reads the process group and resident pages of process name (a /proc
//  entry). Returns false when it is gone or unreadable.
static bool
s_proc_stat (int proc_fd, const char *name, pid_t *pgid, uint64_t *pages)
{
    char path[sizeof ((struct dirent *)0)->d_name + 8];
    snprintf (path, sizeof path, "%s/stat", name);
    int fd = openat (proc_fd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    char line[1024];
    ssize_t got = read (fd, line, sizeof line - 1);
    close (fd);
    if (got <= 0)
        return false;
    line[got] = 0;
    //  The command name may hold anything, ')' too: fields follow the last
    //  ')'. Then: state ppid pgrp, 18 fields, rss (proc(5), field 24)
    char *fields = strrchr (line, ')');
    int group;
    long long rss;
    if (!fields
        || sscanf (fields + 1,
                   " %*s %*s %d"                          //  3-5
                   " %*s %*s %*s %*s %*s %*s %*s %*s %*s" //  6-14
                   " %*s %*s %*s %*s %*s %*s %*s %*s %*s" //  15-23
                   " %lld",                               //  24
                   &group, &rss)
               != 2)
        return false;
    *pgid = (pid_t)group;
    *pages = rss > 0 ? (uint64_t)rss : 0;
    return true;
}

//  Sums the resident memory of each busy child's process group (the child
//  and the commands it runs) and kills the groups over the limit.
static void
s_check_memory (node_t *self)
{
    size_t count = 0;
    for (size_t i = 0; i < self->slot_count; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->child && slot->task && !slot->exited && !slot->revoked
            && (slot->killed_for == S_KILLED_NONE
                || slot->killed_for == S_KILLED_SOFT))
            count++;
    }
    if (count == 0)
        return;
    s_group_t *groups = (s_group_t *)calloc (count, sizeof *groups);
    if (!groups)
        return;
    count = 0;
    for (size_t i = 0; i < self->slot_count; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->child && slot->task && !slot->exited && !slot->revoked
            && (slot->killed_for == S_KILLED_NONE
                || slot->killed_for == S_KILLED_SOFT))
            groups[count++] = (s_group_t){child_pid (slot->child), slot, 0};
    }
    qsort (groups, count, sizeof *groups, s_group_compare);
    DIR *proc = opendir ("/proc");
    if (!proc) {
        if (s_limit_pass (&self->proc_log))
            zsys_warning ("worker: cannot read /proc to check the memory of "
                          "children: %s",
                          strerror (errno));
        free (groups);
        return;
    }
    long page_size = sysconf (_SC_PAGESIZE);
    uint64_t page_kb = page_size > 1024 ? (uint64_t)page_size / 1024 : 4;
    struct dirent *entry;
    while ((entry = readdir (proc))) {
        if (entry->d_name[0] < '1' || entry->d_name[0] > '9')
            continue;
        pid_t pgid;
        uint64_t pages;
        if (!s_proc_stat (dirfd (proc), entry->d_name, &pgid, &pages))
            continue;
        s_group_t key = {pgid, NULL, 0};
        s_group_t *group = (s_group_t *)bsearch (
            &key, groups, count, sizeof *groups, s_group_compare);
        if (group)
            group->rss_kb += pages * page_kb;
    }
    closedir (proc);
    int64_t now_us = s_now_us ();
    for (size_t i = 0; i < count; i++) {
        s_slot_t *slot = groups[i].slot;
        if (groups[i].rss_kb > slot->peak_rss_kb)
            slot->peak_rss_kb = groups[i].rss_kb;
        if (groups[i].rss_kb > self->config->max_memory_kb) {
            s_task_t *task = slot->task;
            zsys_warning (
                "worker: task %" PRIu64 "#%" PRIu32 " (%s) uses %" PRIu64
                " kB, over the limit of %" PRIu64
                " kB; killing child %d and its process group",
                task->id, task->attempt, s_handler_name (self, task->handler),
                groups[i].rss_kb, self->config->max_memory_kb,
                (int)groups[i].pgid);
            slot->killed_for = S_KILLED_MEMORY;
            slot->killed_after_ms =
                now_us > task->started_us
                    ? (uint64_t)(now_us - task->started_us) / 1000
                    : 0;
            child_kill (slot->child);
        }
    }
    free (groups);
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void)loop;
    (void)timer_id;
    node_t *self = (node_t *)arg;
    int64_t now = s_now_ms ();
    //  SIGINT caught by CZMQ's handler in a thread that did not block it
    if (zsys_interrupted) {
        zsys_interrupted = 0;
        if (!self->draining)
            s_drain_start (self, "interrupted");
        else
            s_stop (self, DROVER_ESHUTDOWN);
    }
    if (self->config->max_memory_kb
        && now - self->memory_checked_ms >= S_MEMORY_CHECK_MS) {
        self->memory_checked_ms = now;
        s_check_memory (self);
    }
    int64_t now_us = s_now_us ();
    for (size_t i = 0; i < self->slot_count; i++) {
        s_slot_t *slot = &self->slots[i];
        s_task_t *task = slot->task;
        if (task && !slot->revoked && !slot->exited
            && (slot->killed_for == S_KILLED_NONE
                || slot->killed_for == S_KILLED_SOFT))
            s_check_time (self, slot, now_us);
        else if (task && slot->revoked && !slot->exited && slot->revoke_kill_us
                 && now_us >= slot->revoke_kill_us) {
            zsys_info ("worker: revoked task %" PRIu64 "#%" PRIu32
                       " outlived its grace period; killing child %d",
                       task->id, task->attempt, (int)child_pid (slot->child));
            slot->revoke_kill_us = 0;
            child_kill (slot->child);
        }
        if (!slot->child && slot->restart_at_ms && now >= slot->restart_at_ms
            && !self->stopping) {
            s_slot_start (self, slot);
            s_assign (self);
        }
    }
    if (!self->welcomed) {
        if (now - self->hello_sent_ms >= S_HELLO_IVL_MS)
            s_send_hello (self);
    }
    else if (now - self->broker_recv_ms
             > (int64_t)self->heartbeat_ms * self->liveness) {
        char why[96];
        snprintf (why, sizeof why, "broker silent for %" PRId64 " ms",
                  now - self->broker_recv_ms);
        s_session_restart (self, why);
    }
    else if (now - self->broker_sent_ms >= self->heartbeat_ms) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HEARTBEAT);
        s_send_broker (self, &msg);
    }
    results_resend_due (self->results, now);
    if (zlistx_size (self->queue) == 0)
        s_assign (self); //  a task that waits behind a long one moves
    s_flush (self);
    if (self->draining && self->drain_deadline_ms
        && now >= self->drain_deadline_ms && !self->stopping) {
        zsys_warning ("worker: drain deadline passed with %zu tasks and %zu "
                      "results left",
                      s_held (self), results_size (self->results));
        s_stop (self, DROVER_ESHUTDOWN);
    }
    return self->stopping ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  The class

node_t *
node_new (const worker_config_t *config)
{
    assert (config);
    assert (config->handler_count > 0);
    assert (config->children > 0);
    assert (config->name);
    node_t *self = (node_t *)zmalloc (sizeof *self);
    if (!self)
        return NULL;
    self->config = config;
    self->signal_fd = -1;
    self->heartbeat_ms = S_HEARTBEAT_MS;
    self->liveness = S_LIVENESS;
    self->max_payload = DROVER_MAX_PAYLOAD;
    self->max_batch = DROVER_MAX_BATCH;
    self->slot_count = config->children;
    self->lookahead_max = config->lookahead_auto
                              ? (config->children * S_LOOKAHEAD_PER_CHILD
                                         < DROVER_WORKER_MAX_LOOKAHEAD
                                     ? config->children * S_LOOKAHEAD_PER_CHILD
                                     : DROVER_WORKER_MAX_LOOKAHEAD)
                              : config->lookahead;
    self->task_us_average = -1;
    self->handler_names =
        (const char **)zmalloc (config->handler_count * sizeof (char *));
    self->slots = (s_slot_t *)zmalloc (self->slot_count * sizeof (s_slot_t));
    self->queue = zlistx_new ();
    self->held = id_map_new ();
    assert (self->held);
    self->fails = zlistx_new ();
    self->results = results_new ();
    if (!self->handler_names || !self->slots || !self->queue || !self->fails
        || !self->results) {
        node_destroy (&self);
        return NULL;
    }
    zlistx_set_destructor (self->fails, s_fail_destroy);
    for (size_t i = 0; i < config->handler_count; i++)
        self->handler_names[i] = config->handlers[i].name;
    for (size_t i = 0; i < self->slot_count; i++) {
        self->slots[i].node = self;
    }
    return self;
}

void
node_destroy (node_t **self_p)
{
    assert (self_p);
    node_t *self = *self_p;
    if (!self)
        return;
    if (self->queue)
        while (zlistx_size (self->queue)) {
            s_task_t *task = (s_task_t *)zlistx_detach (self->queue, NULL);
            s_task_destroy (self, &task);
        }
    zlistx_destroy (&self->queue);
    zlistx_destroy (&self->fails);
    results_destroy (&self->results);
    for (size_t i = 0; self->slots && i < self->slot_count; i++) {
        assert (!self->slots[i].child);
        s_task_destroy (self, &self->slots[i].task);
        while (self->slots[i].queued_count)
            s_task_destroy (
                self, &self->slots[i].queued[--self->slots[i].queued_count]);
    }
    id_map_destroy (&self->held);
    free (self->slots);
    free (self->handler_names);
    zstr_free (&self->sink_endpoint);
    zstr_free (&self->instance);
    free (self);
    *self_p = NULL;
}

//  Blocks the signals we handle and opens a signalfd for them.
static int
s_signals_open (node_t *self)
{
    sigset_t handled;
    sigemptyset (&handled);
    sigaddset (&handled, SIGCHLD);
    sigaddset (&handled, SIGTERM);
    sigaddset (&handled, SIGINT);
    //  Blocked too, not handled: a write to the pipe of a child that died
    //  fails with EPIPE instead of killing the node
    sigset_t blocked = handled;
    sigaddset (&blocked, SIGPIPE);
    if (pthread_sigmask (SIG_BLOCK, &blocked, &self->saved_mask))
        return DROVER_ESYSTEM;
    //  An ignored SIGCHLD (or SA_NOCLDWAIT), which a parent can pass on
    //  through exec, makes the kernel reap children itself and send no
    //  SIGCHLD: we would never learn that a child died
    struct sigaction fallback;
    memset (&fallback, 0, sizeof fallback);
    fallback.sa_handler = SIG_DFL;
    sigemptyset (&fallback.sa_mask);
    sigaction (SIGCHLD, &fallback, &self->saved_chld);
    self->signal_fd = signalfd (-1, &handled, SFD_NONBLOCK | SFD_CLOEXEC);
    if (self->signal_fd < 0) {
        zsys_error ("worker: cannot create a signalfd: %s", strerror (errno));
        sigaction (SIGCHLD, &self->saved_chld, NULL);
        pthread_sigmask (SIG_SETMASK, &self->saved_mask, NULL);
        return DROVER_ESYSTEM;
    }
    return 0;
}

static void
s_signals_close (node_t *self)
{
    if (self->signal_fd >= 0) {
        close (self->signal_fd);
        self->signal_fd = -1;
        sigaction (SIGCHLD, &self->saved_chld, NULL);
        //  A SIGPIPE of ours still pending must not strike once unblocked
        sigset_t pipe_signal;
        sigemptyset (&pipe_signal);
        sigaddset (&pipe_signal, SIGPIPE);
        struct timespec now = {0, 0};
        while (sigtimedwait (&pipe_signal, NULL, &now) == SIGPIPE)
            ;
        pthread_sigmask (SIG_SETMASK, &self->saved_mask, NULL);
    }
}

int
node_run (node_t *self)
{
    assert (self);
    assert (!self->loop);
    //  CZMQ's SIGINT/SIGTERM handler would only set zsys_interrupted; we
    //  take the signals from a signalfd instead. Threads ZeroMQ starts
    //  from here on inherit the blocked mask.
    zsys_handler_set (NULL);
    int rc = s_signals_open (self);
    if (rc)
        return rc;
    //  Orphaned grandchildren (commands of exec handlers) become ours to
    //  reap, so a time limit leaves no zombie behind
    prctl (PR_SET_CHILD_SUBREAPER, 1);
    self->loop = zloop_new ();
    assert (self->loop);
    zloop_set_nonstop (self->loop, true);
    zmq_pollitem_t signals = {NULL, self->signal_fd, ZMQ_POLLIN, 0};
    rc = zloop_poller (self->loop, &signals, s_on_signal, self);
    assert (rc == 0);
    zloop_poller_set_tolerant (self->loop, &signals);

    zsys_info ("worker: %s starting %zu children with %zu handlers; broker %s",
               self->config->name, self->slot_count,
               self->config->handler_count, self->config->endpoint);
    //  Children first, forked while this process has no other thread
    //  (ZeroMQ starts its I/O threads with the first socket): a child
    //  forked beside running threads can inherit a lock one of them held
    //  (an ASan build's allocator lock did: the child hung on its next
    //  allocation)
    for (size_t i = 0; i < self->slot_count; i++)
        s_slot_start (self, &self->slots[i]);
    rc = s_session_start (self);
    if (rc == 0)
        rc = zloop_timer (self->loop, S_TICK_MS, 0, s_on_tick, self) == -1
                 ? DROVER_ESYSTEM
                 : 0;
    while (rc == 0 && !self->stopping) {
        zloop_start (self->loop);
        if (!self->stopping && zmq_errno () != EINTR) {
            zsys_error ("worker: reactor failed: %s",
                        zmq_strerror (zmq_errno ()));
            self->rc = DROVER_ESYSTEM;
            break;
        }
    }
    if (rc == 0)
        rc = self->rc;

    s_kill_children (self);
    if (self->sink) {
        zloop_reader_end (self->loop, self->sink);
        zsock_destroy (&self->sink);
    }
    if (self->broker) {
        zloop_reader_end (self->loop, self->broker);
        zsock_destroy (&self->broker);
    }
    zloop_destroy (&self->loop);
    prctl (PR_SET_CHILD_SUBREAPER, 0);
    s_signals_close (self);
    return rc;
}
