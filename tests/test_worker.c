/*  test_worker.c - the worker node against a scripted broker and sink.

    Each test runs the real `drover worker` binary (or the libdrover example
    program) in a child process, and plays broker and sink itself with two
    ROUTER sockets that speak DTP through the proto/ codec. The harness
    (h_*) answers heartbeats, counts credit, stores RESULTs (STORED) and
    collects FAILs; tests wait for conditions with deadlines, never sleep.
    Every test ends by draining the node with SIGTERM and expects exit 0,
    so a node built with ASan also fails a test when it leaks.

    The binaries are found beside this one in the build tree
    (build/tests/test_worker -> build/cli/drover), or through $DROVER.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_chunk.h"
#include "drover_wire.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

extern char **environ;

//  Deadlines stretch under valgrind (meson test --setup valgrind), where the
//  node and everything it runs are ten times slower or worse.
static int
s_slow (void)
{
    return RUNNING_ON_VALGRIND ? 10 : 1;
}

#if defined(__SANITIZE_ADDRESS__)
//  Criterion 2.4's runner (this process, before it forks the tests) leaks
//  one record per parallel timeout; that is not ours to fix here.
const char *__lsan_default_suppressions (void);
const char *
__lsan_default_suppressions (void)
{
    return "leak:libcriterion.so\n";
}
#endif

//  Handlers every test node offers besides the built-ins.
#define H_MARK                                                                 \
    "mark=exec:read f s; echo $PPID > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"; "    \
    "sleep \"$s\"; echo done"
static const char *s_test_handlers[] = {
    "--handler",
    "stubborn=exec:trap '' TERM; read f s; echo $PPID > \"$f.tmp\" && "
    "mv \"$f.tmp\" \"$f\"; sleep \"$s\"; echo done",
    "--handler",
    "up=exec:tr a-z A-Z",
    "--handler",
    "cat=exec:cat",
    "--handler",
    "bad=exec:echo oops >&2; exit 3",
    "--handler",
    "ppid=exec:echo $PPID",
    "--handler",
    H_MARK,
    "--handler",
    "segv=exec:kill -SEGV $$",
    "--handler",
    "policy=exec:cut -d' ' -f41 /proc/self/stat", //  e.g. 0 normal, 3 batch
    "--handler",
    "noisy=exec:head -c 100000 /dev/zero | tr '\\0' x >&2; "
    "echo END >&2; exit 1",
    NULL,
};

#define SHA256_ABC                                                             \
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

//  One outcome the harness received (RESULT at the sink or FAIL at the
//  broker), the first of its task id.
typedef struct {
    uint64_t id;         //  task id
    uint32_t attempt;    //  attempt
    int32_t code;        //  0 or DROVER_E*
    char *reason;        //  or NULL
    char *node;          //  or NULL
    int32_t signal;      //  as sent
    int32_t exit_status; //  as sent
    uint64_t elapsed_us; //  as sent
    uint64_t cpu_us;     //  as sent
    uint64_t max_rss_kb; //  as sent
    zchunk_t *payload;   //  RESULT: the result octets
    size_t receipts;     //  how many times this id arrived
} h_outcome_t;

//  The harness: a fake broker, a fake sink, and the node under test.
typedef struct {
    zsock_t *broker;          //  ROUTER playing the broker
    char broker_ep[128];      //  its endpoint
    zsock_t *sink;            //  ROUTER playing the sink
    char sink_ep[64];         //  its endpoint
    zpoller_t *poller;        //  both sockets
    zframe_t *node_id;        //  routing id of the node's current session
    zframe_t *sink_id;        //  routing id of the node at the sink
    pid_t pid;                //  the node process, 0 once reaped
    int exit_status;          //  its wait status once reaped
    char tmp[64];             //  a scratch directory
    char log[128];            //  the node's output goes here; "": ours
    bool welcomed;            //  WELCOME sent to the current session
    bool silent;              //  do not send heartbeats
    bool auto_store;          //  answer RESULTs with STORED
    size_t result_messages;   //  RESULT messages received
    uint32_t hb_ms;           //  heartbeat interval given in WELCOME
    int64_t hb_sent_ms;       //  last heartbeat sent
    uint64_t hello_count;     //  HELLOs received
    drover_packet_t *hello;   //  the last HELLO
    uint64_t credit;          //  credit received in this session
    uint64_t dispatched;      //  tasks sent in DISPATCH in this session
    uint64_t heartbeats;      //  HEARTBEATs received from the node
    uint64_t drains;          //  DRAINs received
    uint64_t byes;            //  BYEs received
    uint64_t others;          //  anything else received
    uint64_t credit_at_drain; //  credit received before the first DRAIN
    zhashx_t *results;        //  id -> h_outcome_t, RESULTs at the sink
    zhashx_t *fails;          //  id -> h_outcome_t, FAILs at the broker
} h_t;

//  --------------------------------------------------------------------------
//  Paths and processes

//  Path of a file in the build tree, relative to its root.
static void
s_build_path (char *path, size_t size, const char *relative)
{
    const char *drover = getenv ("DROVER");
    if (drover && !strcmp (relative, "cli/drover")) {
        snprintf (path, size, "%s", drover);
        return;
    }
    char self[PATH_MAX];
    ssize_t length = readlink ("/proc/self/exe", self, sizeof self - 1);
    cr_assert (length > 0);
    self[length] = 0;
    //  build/tests/test_worker -> build
    char *tests = dirname (self);
    char *root = dirname (tests);
    snprintf (path, size, "%s/%s", root, relative);
}

//  The state letter of pid in /proc (R, S, T, Z...), or 0 when it is gone.
static char
s_process_state (pid_t pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    char line[512] = "";
    char *got = fgets (line, sizeof line, file);
    fclose (file);
    char *close_paren = got ? strrchr (line, ')') : NULL;
    return close_paren && close_paren[1] == ' ' ? close_paren[2] : 0;
}

//  True when pid is gone or a zombie.
static bool
s_process_gone (pid_t pid)
{
    char path[64];
    snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return true;
    char line[512] = "";
    char *got = fgets (line, sizeof line, file);
    fclose (file);
    char *close_paren = got ? strrchr (line, ')') : NULL;
    return close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z';
}

//  True when no process is left in process group pgid. Members that were
//  orphaned to us (we are a subreaper) are reaped first: a zombie is still
//  a member.
static bool
s_group_gone (pid_t pgid)
{
    while (waitpid (-pgid, NULL, WNOHANG) > 0)
        ;
    return kill (-pgid, 0) == -1 && errno == ESRCH;
}

//  Finds the children of parent; returns how many (at most max).
static size_t
s_children_of (pid_t parent, pid_t *pids, size_t max)
{
    size_t count = 0;
    DIR *proc = opendir ("/proc");
    cr_assert (proc);
    struct dirent *entry;
    while ((entry = readdir (proc)) && count < max) {
        pid_t pid = (pid_t)atoi (entry->d_name);
        if (pid <= 0)
            continue;
        char path[64];
        snprintf (path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *file = fopen (path, "r");
        if (!file)
            continue;
        char line[512] = "";
        char *got = fgets (line, sizeof line, file);
        fclose (file);
        char *close_paren = got ? strrchr (line, ')') : NULL;
        char state;
        int ppid;
        if (close_paren && sscanf (close_paren + 2, "%c %d", &state, &ppid) == 2
            && ppid == parent && state != 'Z')
            pids[count++] = pid;
    }
    closedir (proc);
    return count;
}

//  Reads a pid written by the mark handler; 0 while there is none.
static pid_t
s_read_pid (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return 0;
    int pid = 0;
    if (fscanf (file, "%d", &pid) != 1)
        pid = 0;
    fclose (file);
    return (pid_t)pid;
}

//  Runs argv with the environment minus DROVER_* plus env (NAME=VALUE,
//  NULL-terminated), and with signal ignored unless it is 0 (an ignored
//  disposition survives exec); returns the pid.
static pid_t
s_spawn_ignoring (const char *const *argv, const char *const *env, int out_fd,
                  int err_fd, int ignored)
{
    const char *envp[256];
    size_t count = 0;
    for (char **var = environ; *var && count < 200; var++)
        if (strncmp (*var, "DROVER_", 7))
            envp[count++] = *var;
    for (size_t i = 0; env && env[i] && count < 255; i++)
        envp[count++] = env[i];
    envp[count] = NULL;
    fflush (stdout);
    fflush (stderr);
    pid_t parent = getpid ();
    pid_t pid = fork ();
    cr_assert (pid >= 0);
    if (pid == 0) {
        //  A failed assertion ends the test process: the node goes too
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        if (getppid () != parent)
            _exit (127);
        if (out_fd >= 0)
            dup2 (out_fd, 1);
        if (err_fd >= 0)
            dup2 (err_fd, 2);
        if (ignored)
            signal (ignored, SIG_IGN);
        execve (argv[0], (char *const *)argv, (char *const *)envp);
        _exit (127);
    }
    return pid;
}

static pid_t
s_spawn (const char *const *argv, const char *const *env, int out_fd,
         int err_fd)
{
    return s_spawn_ignoring (argv, env, out_fd, err_fd, 0);
}

//  --------------------------------------------------------------------------
//  The harness

static void
s_outcome_destroy (void **item_p)
{
    h_outcome_t *outcome = (h_outcome_t *)*item_p;
    if (outcome) {
        free (outcome->reason);
        free (outcome->node);
        zchunk_destroy (&outcome->payload);
        free (outcome);
        *item_p = NULL;
    }
}

static zsock_t *
s_router (char *endpoint, size_t size)
{
    zsock_t *sock = zsock_new (ZMQ_ROUTER);
    cr_assert (sock);
    zsock_set_linger (sock, 0);
    int port = zsock_bind (sock, "tcp://127.0.0.1:*");
    cr_assert (port > 0);
    snprintf (endpoint, size, "tcp://127.0.0.1:%d", port);
    return sock;
}

static h_t *
h_new (void)
{
    //  Orphans of a killed node come to us, so we can see them die
    prctl (PR_SET_CHILD_SUBREAPER, 1);
    h_t *h = (h_t *)zmalloc (sizeof *h);
    cr_assert (h);
    h->broker = s_router (h->broker_ep, sizeof h->broker_ep);
    h->sink = s_router (h->sink_ep, sizeof h->sink_ep);
    h->poller = zpoller_new (h->broker, h->sink, NULL);
    cr_assert (h->poller);
    h->results = zhashx_new ();
    h->fails = zhashx_new ();
    zhashx_set_destructor (h->results, s_outcome_destroy);
    zhashx_set_destructor (h->fails, s_outcome_destroy);
    h->auto_store = true;
    snprintf (h->tmp, sizeof h->tmp, "/tmp/drover-worker-test-XXXXXX");
    cr_assert (mkdtemp (h->tmp));
    return h;
}

//  Starts `drover worker` with our handlers, the broker endpoint (unless
//  connect is false) and extra arguments (NULL-terminated), and env; with
//  signal ignored unless it is 0.
static void
h_start_ignoring (h_t *h, bool connect, const char *const *extra,
                  const char *const *env, int ignored)
{
    char drover[PATH_MAX];
    s_build_path (drover, sizeof drover, "cli/drover");
    const char *argv[64];
    size_t argc = 0;
    argv[argc++] = drover;
    argv[argc++] = "worker";
    if (connect) {
        argv[argc++] = "--connect";
        argv[argc++] = h->broker_ep;
    }
    for (size_t i = 0; s_test_handlers[i]; i++)
        argv[argc++] = s_test_handlers[i];
    //  The tests count credit one per child unless they ask for a
    //  lookahead (flag or environment): the later flag wins
    bool lookahead = false;
    for (size_t i = 0; extra && extra[i]; i++)
        lookahead = lookahead || !strcmp (extra[i], "--lookahead");
    for (size_t i = 0; env && env[i]; i++)
        lookahead = lookahead || !strncmp (env[i], "DROVER_LOOKAHEAD=", 17);
    if (!lookahead) {
        argv[argc++] = "--lookahead";
        argv[argc++] = "0";
    }
    for (size_t i = 0; extra && extra[i] && argc < 63; i++)
        argv[argc++] = extra[i];
    argv[argc] = NULL;
    int log = h->log[0] ? open (h->log,
                                O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)
                        : -1;
    h->pid = s_spawn_ignoring (argv, env, log, log, ignored);
    if (log >= 0)
        close (log);
}

static void
h_start_env (h_t *h, bool connect, const char *const *extra,
             const char *const *env)
{
    h_start_ignoring (h, connect, extra, env, 0);
}

static void
h_start (h_t *h, const char *const *extra)
{
    h_start_env (h, true, extra, NULL);
}

//  Keeps the first outcome of each id and counts receipts.
static void
s_record (zhashx_t *map, const drover_task_t *item, bool payload)
{
    char key[32];
    snprintf (key, sizeof key, "%" PRIu64, item->id);
    h_outcome_t *outcome = (h_outcome_t *)zhashx_lookup (map, key);
    if (outcome) {
        outcome->receipts++;
        return;
    }
    outcome = (h_outcome_t *)zmalloc (sizeof *outcome);
    cr_assert (outcome);
    outcome->id = item->id;
    outcome->attempt = item->attempt;
    outcome->code = item->code;
    outcome->reason = item->reason ? strdup (item->reason) : NULL;
    outcome->node = item->node ? strdup (item->node) : NULL;
    outcome->signal = item->signal;
    outcome->exit_status = item->exit_status;
    outcome->elapsed_us = item->elapsed_us;
    outcome->cpu_us = item->cpu_us;
    outcome->max_rss_kb = item->max_rss_kb;
    if (payload)
        outcome->payload = zchunk_new (item->payload.data, item->payload.size);
    outcome->receipts = 1;
    zhashx_insert (map, key, outcome);
}

static h_outcome_t *
h_result (h_t *h, uint64_t id)
{
    char key[32];
    snprintf (key, sizeof key, "%" PRIu64, id);
    return (h_outcome_t *)zhashx_lookup (h->results, key);
}

static h_outcome_t *
h_fail (h_t *h, uint64_t id)
{
    char key[32];
    snprintf (key, sizeof key, "%" PRIu64, id);
    return (h_outcome_t *)zhashx_lookup (h->fails, key);
}

static void
h_send_broker (h_t *h, drover_msg_t *msg)
{
    cr_assert (h->node_id, "no node session to send to");
    int rc = drover_wire_send (h->broker, h->node_id, msg, NULL);
    cr_assert_eq (rc, 0, "cannot send %s", drover_command_name (msg->command));
}

static void
h_store_code (h_t *h, zframe_t *routing_id, uint64_t id, uint32_t attempt,
              int32_t code)
{
    drover_task_t item;
    memset (&item, 0, sizeof item);
    item.id = id;
    item.attempt = attempt;
    item.code = code;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_STORED);
    msg.tasks = &item;
    msg.task_count = 1;
    cr_assert_eq (drover_wire_send (h->sink, routing_id, &msg, NULL), 0);
}

static void
h_store (h_t *h, zframe_t *routing_id, uint64_t id, uint32_t attempt)
{
    h_store_code (h, routing_id, id, attempt, 0);
}

static void
h_on_broker (h_t *h, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    switch (msg->command) {
        case DROVER_HELLO:
            h->hello_count++;
            zframe_destroy (&h->node_id);
            h->node_id = zframe_dup (drover_packet_routing_id (packet));
            h->welcomed = false;
            //  A new session: the broker forgets the old credit
            h->credit = 0;
            h->dispatched = 0;
            drover_packet_destroy (&h->hello);
            h->hello = packet; //  kept
            return;
        case DROVER_CREDIT: h->credit += msg->credit; break;
        case DROVER_HEARTBEAT: h->heartbeats++; break;
        case DROVER_FAIL:
            for (size_t i = 0; i < msg->task_count; i++)
                s_record (h->fails, &msg->tasks[i], false);
            break;
        case DROVER_DRAIN:
            if (h->drains++ == 0)
                h->credit_at_drain = h->credit;
            break;
        case DROVER_BYE: h->byes++; break;
        default: h->others++; break;
    }
    drover_packet_destroy (&packet);
}

static void
h_on_sink (h_t *h, drover_packet_t *packet)
{
    drover_msg_t *msg = drover_packet_msg (packet);
    if (msg->command == DROVER_RESULT) {
        h->result_messages++;
        zframe_destroy (&h->sink_id);
        h->sink_id = zframe_dup (drover_packet_routing_id (packet));
        for (size_t i = 0; i < msg->task_count; i++) {
            s_record (h->results, &msg->tasks[i], true);
            if (h->auto_store)
                h_store (h, drover_packet_routing_id (packet), msg->tasks[i].id,
                         msg->tasks[i].attempt);
        }
    }
    else
        h->others++;
    drover_packet_destroy (&packet);
}

//  Waits up to timeout_ms for one message and handles it; heartbeats the
//  node meanwhile.
static void
h_poll (h_t *h, int timeout_ms)
{
    int64_t now = zclock_mono ();
    bool beat = h->welcomed && !h->silent && h->hb_ms;
    if (beat && now - h->hb_sent_ms >= h->hb_ms) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_HEARTBEAT);
        h_send_broker (h, &msg);
        h->hb_sent_ms = now;
    }
    int wait = timeout_ms;
    if (beat && h->hb_sent_ms + h->hb_ms - now < wait)
        wait = (int)(h->hb_sent_ms + h->hb_ms - now);
    if (wait < 0)
        wait = 0;
    zsock_t *which = (zsock_t *)zpoller_wait (h->poller, wait);
    if (!which)
        return;
    drover_packet_t *packet;
    int rc = drover_packet_recv (which, true, &packet);
    if (rc == DROVER_EIO)
        return;
    cr_assert_eq (rc, 0, "the node sent a malformed message: %s",
                  packet ? drover_packet_error (packet) : "");
    if (which == h->broker)
        h_on_broker (h, packet);
    else
        h_on_sink (h, packet);
}

//  Handles messages until cond holds or timeout_ms passes.
#define H_WAIT(h, timeout_ms, cond)                                            \
    do {                                                                       \
        int64_t deadline_ = zclock_mono () + (int64_t)(timeout_ms)*s_slow ();  \
        while (!(cond) && zclock_mono () < deadline_)                          \
            h_poll ((h), 10);                                                  \
    } while (0)

//  The same, then asserts cond.
#define H_EXPECT(h, timeout_ms, cond, ...)                                     \
    do {                                                                       \
        H_WAIT (h, timeout_ms, cond);                                          \
        cr_assert (cond, __VA_ARGS__);                                         \
    } while (0)

//  Handles messages for ms milliseconds.
static void
h_pump (h_t *h, int ms)
{
    H_WAIT (h, ms, false);
}

static void
h_welcome (h_t *h, uint32_t heartbeat_ms, uint32_t liveness)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_WELCOME);
    msg.instance = "test-broker-1";
    msg.endpoint = h->sink_ep;
    msg.heartbeat_ms = heartbeat_ms;
    msg.liveness = liveness;
    msg.max_payload = DROVER_MAX_PAYLOAD;
    msg.max_batch = DROVER_MAX_BATCH;
    h_send_broker (h, &msg);
    h->welcomed = true;
    h->hb_ms = heartbeat_ms;
    h->hb_sent_ms = zclock_mono ();
}

//  Waits for HELLO, answers WELCOME, waits for credit.
static void
h_join (h_t *h, uint32_t heartbeat_ms, uint32_t liveness, uint64_t credit)
{
    H_EXPECT (h, 10000, h->hello_count > 0, "no HELLO from the node");
    h_welcome (h, heartbeat_ms, liveness);
    H_EXPECT (h, 5000, h->credit >= credit,
              "credit %" PRIu64 " after WELCOME, expected %" PRIu64, h->credit,
              credit);
}

//  Leases one task to the node, with a hard and a soft time limit (0:

//  Leases items to the node in one DISPATCH, and counts them.
static void
h_send_dispatch (h_t *h, drover_task_t *items, size_t count)
{
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_DISPATCH);
    msg.tasks = items;
    msg.task_count = count;
    h_send_broker (h, &msg);
    h->dispatched += count;
}
//  none).
static void
h_dispatch_limits (h_t *h, uint64_t id, const char *handler,
                   const void *payload, size_t size, uint64_t timeout_ms,
                   uint64_t soft_timeout_ms)
{
    drover_task_t item;
    memset (&item, 0, sizeof item);
    item.id = id;
    item.attempt = 1;
    item.handler = handler;
    item.timeout_ms = timeout_ms;
    item.soft_timeout_ms = soft_timeout_ms;
    item.payload.data = payload;
    item.payload.size = size;
    h_send_dispatch (h, &item, 1);
}

//  Leases one task to the node, with a hard time limit (0: none).
static void
h_dispatch (h_t *h, uint64_t id, const char *handler, const void *payload,
            size_t size, uint64_t timeout_ms)
{
    h_dispatch_limits (h, id, handler, payload, size, timeout_ms, 0);
}

static void
h_dispatch_text (h_t *h, uint64_t id, const char *handler, const char *text)
{
    h_dispatch (h, id, handler, text, strlen (text), 0);
}

//  Credit the node still offers: received minus used.
static uint64_t
h_open_credit (h_t *h)
{
    return h->credit - h->dispatched;
}

//  Waits for the node to exit; returns true if it did.
static bool
h_wait_exit (h_t *h, int timeout_ms)
{
    int64_t deadline = zclock_mono () + (int64_t)timeout_ms * s_slow ();
    while (h->pid > 0) {
        int status;
        pid_t pid = waitpid (h->pid, &status, WNOHANG);
        if (pid == h->pid) {
            h->exit_status = status;
            h->pid = 0;
            break;
        }
        if (zclock_mono () >= deadline)
            return false;
        h_poll (h, 10);
    }
    return true;
}

//  Drains the node with SIGTERM and expects a clean exit, then frees all.
static void
h_destroy (h_t **h_p)
{
    h_t *h = *h_p;
    if (h->pid > 0) {
        kill (h->pid, SIGTERM);
        h->auto_store = true;
        bool exited = h_wait_exit (h, 15000);
        if (!exited) {
            kill (h->pid, SIGKILL);
            waitpid (h->pid, NULL, 0);
        }
        cr_expect (exited, "the node did not drain within 15 s");
        cr_expect (exited && WIFEXITED (h->exit_status)
                       && WEXITSTATUS (h->exit_status) == 0,
                   "the node did not exit cleanly (wait status %#x)",
                   h->exit_status);
    }
    //  Reap adopted orphans
    while (waitpid (-1, NULL, WNOHANG) > 0)
        ;
    char command[128];
    snprintf (command, sizeof command, "rm -rf '%s'", h->tmp);
    cr_expect_eq (system (command), 0);
    zpoller_destroy (&h->poller);
    zsock_destroy (&h->broker);
    zsock_destroy (&h->sink);
    zframe_destroy (&h->node_id);
    zframe_destroy (&h->sink_id);
    drover_packet_destroy (&h->hello);
    zhashx_destroy (&h->results);
    zhashx_destroy (&h->fails);
    free (h);
    *h_p = NULL;
}

//  --------------------------------------------------------------------------
//  The tests

Test (worker, hello_then_credit_for_each_child, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "2", NULL};
    h_start (h, extra);
    H_EXPECT (h, 10000, h->hello_count > 0, "no HELLO from the node");
    drover_msg_t *hello = drover_packet_msg (h->hello);
    cr_assert_str_eq (hello->role, "node");
    char suffix[32];
    snprintf (suffix, sizeof suffix, ":%d", (int)h->pid);
    size_t length = strlen (hello->name);
    cr_assert (length > strlen (suffix)
                   && !strcmp (hello->name + length - strlen (suffix), suffix),
               "name '%s' is not host:pid", hello->name);
    cr_assert_eq (hello->children, 2);
    cr_assert_eq (hello->lookahead, 0, "--lookahead 0 (the tests' default)");
    cr_assert_eq (hello->queue_count, 0);
    const char *expected[] = {"echo", "sleep", "fail",     "crash", "sha256",
                              "up",   "cat",   "bad",      "ppid",  "mark",
                              "segv", "noisy", "stubborn", "policy"};
    size_t expected_count = sizeof expected / sizeof expected[0];
    cr_assert_eq (hello->handler_count, expected_count);
    for (size_t i = 0; i < expected_count; i++) {
        bool found = false;
        for (size_t j = 0; j < hello->handler_count; j++)
            found = found || !strcmp (hello->handlers[j], expected[i]);
        cr_assert (found, "handler %s not announced", expected[i]);
    }
    //  HELLO again until WELCOME; no credit before WELCOME: the node does
    //  not know the sink yet
    H_EXPECT (h, 3000, h->hello_count >= 2, "HELLO not repeated");
    cr_assert_eq (h->credit, 0);
    h_welcome (h, 1000, 5);
    H_EXPECT (h, 5000, h->credit >= 2, "no credit after WELCOME");
    h_pump (h, 300);
    cr_assert_eq (h->credit, 2, "credit %" PRIu64 ", expected 2", h->credit);
    h_destroy (&h);
}

Test (worker, hello_carries_options, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j",      "1",         "--lookahead", "2",
                           "--queue", "q1",        "--queue",     "q2",
                           "--name",  "test-node", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 3);
    drover_msg_t *hello = drover_packet_msg (h->hello);
    cr_assert_str_eq (hello->name, "test-node");
    cr_assert_eq (hello->children, 1);
    cr_assert_eq (hello->lookahead, 2);
    cr_assert_eq (hello->queue_count, 2);
    cr_assert_str_eq (hello->queues[0], "q1");
    cr_assert_str_eq (hello->queues[1], "q2");
    h_pump (h, 200);
    cr_assert_eq (h->credit, 3, "credit = children + lookahead");
    h_destroy (&h);
}

Test (worker, environment_stands_in_for_flags, .timeout = 30)
{
    h_t *h = h_new ();
    char connect[160];
    snprintf (connect, sizeof connect, "DROVER_CONNECT=%s", h->broker_ep);
    const char *env[] = {connect, "DROVER_JOBS=3", "DROVER_NAME=env-node",
                         NULL};
    h_start_env (h, false, NULL, env);
    h_join (h, 1000, 5, 3);
    drover_msg_t *hello = drover_packet_msg (h->hello);
    cr_assert_eq (hello->children, 3);
    cr_assert_str_eq (hello->name, "env-node");
    h_destroy (&h);
}

Test (worker, echo_and_sha256, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "2", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    h_dispatch_text (h, 1, "echo", "hello");
    h_dispatch_text (h, 2, "sha256", "abc");
    H_EXPECT (h, 5000, h_result (h, 1) && h_result (h, 2), "no results");
    h_outcome_t *echo = h_result (h, 1);
    cr_assert_eq (echo->code, 0);
    cr_assert_eq (zchunk_size (echo->payload), 5);
    cr_assert (!memcmp (zchunk_data (echo->payload), "hello", 5));
    cr_assert (echo->node && strchr (echo->node, ':'));
    h_outcome_t *hash = h_result (h, 2);
    cr_assert_eq (zchunk_size (hash->payload), 64);
    cr_assert (!memcmp (zchunk_data (hash->payload), SHA256_ABC, 64),
               "sha256 of 'abc' is wrong");
    //  An empty payload is a payload too
    h_dispatch (h, 3, "echo", NULL, 0, 0);
    H_EXPECT (h, 5000, h_result (h, 3), "no result for an empty payload");
    cr_assert_eq (zchunk_size (h_result (h, 3)->payload), 0);
    //  Every finished attempt gives its credit back
    H_EXPECT (h, 5000, h_open_credit (h) == 2, "open credit %" PRIu64,
              h_open_credit (h));
    cr_assert_eq (zhashx_size (h->fails), 0);
    h_destroy (&h);
}

Test (worker, several_tasks_in_one_dispatch, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "2", "--lookahead", "4", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 6);
    drover_task_t items[6];
    char texts[6][16];
    memset (items, 0, sizeof items);
    for (int i = 0; i < 6; i++) {
        snprintf (texts[i], sizeof texts[i], "task-%d", i);
        items[i].id = (uint64_t)(100 + i);
        items[i].attempt = 1;
        items[i].handler = "echo";
        items[i].payload.data = texts[i];
        items[i].payload.size = strlen (texts[i]);
    }
    h_send_dispatch (h, items, 6);
    H_EXPECT (h, 5000, zhashx_size (h->results) == 6, "%zu results of 6",
              zhashx_size (h->results));
    for (int i = 0; i < 6; i++) {
        h_outcome_t *result = h_result (h, (uint64_t)(100 + i));
        cr_assert (result);
        cr_assert_eq (zchunk_size (result->payload), strlen (texts[i]));
        cr_assert (!memcmp (zchunk_data (result->payload), texts[i],
                            strlen (texts[i])));
    }
    H_EXPECT (h, 5000, h_open_credit (h) == 6, "open credit %" PRIu64,
              h_open_credit (h));
    h_destroy (&h);
}

Test (worker, fail_reports_the_message, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 7, "fail", "boom: it broke");
    H_EXPECT (h, 5000, h_fail (h, 7), "no FAIL");
    h_outcome_t *fail = h_fail (h, 7);
    cr_assert_eq (fail->code, DROVER_EFAILED, "code %d", fail->code);
    cr_assert_eq (fail->attempt, 1);
    cr_assert_str_eq (fail->reason, "boom: it broke");
    cr_assert (fail->node && strchr (fail->node, ':'));
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "credit not given back");
    cr_assert_null (h_result (h, 7));
    h_destroy (&h);
}

Test (worker, unknown_handler_fails_with_ehandler, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 8, "rm-rf", "/");
    H_EXPECT (h, 5000, h_fail (h, 8), "no FAIL");
    cr_assert_eq (h_fail (h, 8)->code, DROVER_EHANDLER);
    cr_assert (strstr (h_fail (h, 8)->reason, "rm-rf"));
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "credit not given back");
    h_destroy (&h);
}

Test (worker, crash_is_reported_and_the_node_goes_on, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    pid_t before[4];
    H_EXPECT (h, 5000, s_children_of (h->pid, before, 4) == 1, "no child");
    h_dispatch_text (h, 9, "crash", "");
    H_EXPECT (h, 5000, h_fail (h, 9), "no FAIL for the crash");
    h_outcome_t *fail = h_fail (h, 9);
    cr_assert_eq (fail->code, DROVER_ECRASHED, "code %d", fail->code);
    cr_assert_eq (fail->signal, SIGABRT, "signal %d", fail->signal);
    cr_assert (fail->reason && strstr (fail->reason, "signal 6"));
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "credit not restored");
    //  A new child serves the next task
    h_dispatch_text (h, 10, "echo", "still here");
    H_EXPECT (h, 5000, h_result (h, 10), "the node stopped serving");
    pid_t after[4];
    cr_assert_eq (s_children_of (h->pid, after, 4), 1);
    cr_assert_neq (after[0], before[0], "the crashed child was not replaced");
    h_destroy (&h);
}

Test (worker, exec_handler_success, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 11, "up", "hello, world");
    H_EXPECT (h, 5000, h_result (h, 11), "no result");
    h_outcome_t *result = h_result (h, 11);
    cr_assert_eq (zchunk_size (result->payload), 12);
    cr_assert (!memcmp (zchunk_data (result->payload), "HELLO, WORLD", 12));
    h_destroy (&h);
}

//  The kernel policy of the command a child runs for task id (field 41 of
//  its /proc/self/stat), as a number.
static int
s_policy_of_a_command (h_t *h, uint64_t id)
{
    h_dispatch_text (h, id, "policy", "");
    H_EXPECT (h, 5000, h_result (h, id), "no result");
    h_outcome_t *result = h_result (h, id);
    char text[16] = "";
    size_t size = zchunk_size (result->payload);
    cr_assert (size > 0 && size < sizeof text, "policy of %zu octets", size);
    memcpy (text, zchunk_data (result->payload), size);
    return atoi (text);
}

//  The node (started by the tests) has the tests' policy: under the normal
//  one its children take SCHED_BATCH; under any other, or with --child-sched
//  inherit, they keep it.
Test (worker, children_and_their_commands_run_as_batch_unless_told_not_to,
      .timeout = 30)
{
    int own = sched_getscheduler (0);
    cr_assert_geq (own, 0);
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    int policy = s_policy_of_a_command (h, 21);
    cr_assert_eq (policy, own == SCHED_OTHER ? SCHED_BATCH : own,
                  "policy %d under a node of policy %d", policy, own);
    h_destroy (&h);

    h = h_new ();
    const char *inherit[] = {"-j", "1", "--child-sched", "inherit", NULL};
    h_start (h, inherit);
    h_join (h, 1000, 5, 1);
    policy = s_policy_of_a_command (h, 22);
    cr_assert_eq (policy, own, "policy %d, not the node's %d", policy, own);
    h_destroy (&h);
}

Test (worker, exec_handler_failure_has_status_and_stderr, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 12, "bad", "input");
    H_EXPECT (h, 5000, h_fail (h, 12), "no FAIL");
    h_outcome_t *fail = h_fail (h, 12);
    cr_assert_eq (fail->code, DROVER_EFAILED);
    cr_assert_eq (fail->exit_status, 3, "exit status %d", fail->exit_status);
    cr_assert_str_eq (fail->reason, "oops");
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "credit not given back");
    h_destroy (&h);
}

Test (worker, time_limit_kills_the_process_group, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s 30\n", path);
    uint64_t limit = 400 * (uint64_t)s_slow ();
    h_dispatch (h, 13, "mark", payload, strlen (payload), limit);
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    pid_t child = s_read_pid (path);
    cr_assert_eq (getpgid (child), child, "the child leads no process group");
    H_EXPECT (h, 5000, h_fail (h, 13), "no FAIL after the time limit");
    h_outcome_t *fail = h_fail (h, 13);
    cr_assert_eq (fail->code, DROVER_ETIMELIMIT, "code %d", fail->code);
    cr_assert (fail->elapsed_us >= limit * 1000, "elapsed %" PRIu64,
               fail->elapsed_us);
    //  The child and the command it ran (sh, sleep) are all gone
    H_EXPECT (h, 5000, s_group_gone (child),
              "process group %d survived the time limit", (int)child);
    h_dispatch_text (h, 14, "echo", "next");
    H_EXPECT (h, 5000, h_result (h, 14), "no child after the time limit");
    h_destroy (&h);
}

Test (worker, sleeping_child_does_not_delay_an_idle_one, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "2", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    int64_t start = zclock_mono ();
    char sleep[16];
    snprintf (sleep, sizeof sleep, "%d", 1500 * s_slow ());
    h_dispatch_text (h, 15, "sleep", sleep);
    h_dispatch_text (h, 16, "echo", "quick");
    H_EXPECT (h, 1000, h_result (h, 16), "the echo waited for the sleep");
    cr_assert_null (h_result (h, 15));
    H_EXPECT (h, 5000, h_result (h, 15), "no result for the sleep");
    cr_assert (zclock_mono () - start >= 1500 * s_slow ());
    cr_assert_eq (zchunk_size (h_result (h, 15)->payload), strlen (sleep));
    h_destroy (&h);
}

Test (worker, lookahead_task_waits_for_a_child, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", "--lookahead", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    h_dispatch_text (h, 17, "sleep", "300");
    h_dispatch_text (h, 18, "echo", "after");
    H_EXPECT (h, 5000, h_result (h, 18), "the queued task never ran");
    cr_assert (h_result (h, 17), "the queued task overtook the running one");
    H_EXPECT (h, 5000, h_open_credit (h) == 2, "open credit %" PRIu64,
              h_open_credit (h));
    h_destroy (&h);
}

//  Runs ppid (echo $PPID: the child's pid) as task id; returns the pid.
static pid_t
s_child_pid_by_task (h_t *h, uint64_t id)
{
    h_dispatch_text (h, id, "ppid", "");
    H_EXPECT (h, 5000, h_result (h, id), "no result");
    h_outcome_t *result = h_result (h, id);
    char text[32] = "";
    size_t size = zchunk_size (result->payload);
    cr_assert (size > 0 && size < sizeof text);
    memcpy (text, zchunk_data (result->payload), size);
    return (pid_t)atoi (text);
}

Test (worker, max_tasks_per_child_replaces_the_child, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", "--max-tasks-per-child", "2", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    pid_t first = s_child_pid_by_task (h, 19);
    pid_t second = s_child_pid_by_task (h, 20);
    pid_t third = s_child_pid_by_task (h, 21);
    cr_assert (first > 0);
    cr_assert_eq (first, second, "replaced before its second task");
    cr_assert_neq (second, third, "not replaced after two tasks");
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "credit not given back");
    cr_assert_eq (zhashx_size (h->fails), 0, "a retirement is no failure");
    h_destroy (&h);
}

Test (worker, one_mebibyte_round_trip, .timeout = 60)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "2", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    size_t size = 1u << 20;
    uint8_t *data = (uint8_t *)malloc (size);
    cr_assert (data);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t)((i * 2654435761u) >> 13);
    h_dispatch (h, 22, "echo", data, size, 0);
    h_dispatch (h, 23, "cat", data, size, 0);
    H_EXPECT (h, 20000, h_result (h, 22) && h_result (h, 23), "no results");
    cr_assert_eq (zchunk_size (h_result (h, 22)->payload), size);
    cr_assert (!memcmp (zchunk_data (h_result (h, 22)->payload), data, size));
    cr_assert_eq (zchunk_size (h_result (h, 23)->payload), size);
    cr_assert (!memcmp (zchunk_data (h_result (h, 23)->payload), data, size));
    free (data);
    h_destroy (&h);
}

Test (worker, node_started_before_the_broker, .timeout = 30)
{
    h_t *h = h_new ();
    //  Nobody listens at the broker's endpoint while the node starts. An
    //  ipc endpoint of our own: a TCP port we let go could be taken by
    //  another test running at the same time.
    zpoller_remove (h->poller, h->broker);
    zsock_destroy (&h->broker);
    snprintf (h->broker_ep, sizeof h->broker_ep, "ipc://%s/broker", h->tmp);
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    //  The node is up (it connects before it forks) once it has a child
    pid_t child;
    H_WAIT (h, 5000, s_children_of (h->pid, &child, 1) == 1);
    cr_assert_eq (s_children_of (h->pid, &child, 1), 1, "the node is not up");
    h_pump (h, 300);
    h->broker = zsock_new (ZMQ_ROUTER);
    cr_assert (h->broker);
    zsock_set_linger (h->broker, 0);
    cr_assert_neq (zsock_bind (h->broker, "%s", h->broker_ep), -1,
                   "cannot bind %s", h->broker_ep);
    zpoller_add (h->poller, h->broker);
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 24, "echo", "late");
    H_EXPECT (h, 5000, h_result (h, 24), "no result");
    h_destroy (&h);
}

Test (worker, heartbeats_flow_while_a_long_task_runs, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 100, 3, 1);
    char sleep[16];
    snprintf (sleep, sizeof sleep, "%d", 1500 * s_slow ());
    h_dispatch_text (h, 25, "sleep", sleep);
    h_pump (h, 100);
    uint64_t before = h->heartbeats;
    h_pump (h, 1000);
    uint64_t beats = h->heartbeats - before;
    cr_assert (beats >= (s_slow () > 1 ? 3u : 6u),
               "%" PRIu64 " heartbeats in 1 s at 100 ms", beats);
    cr_assert_null (h_result (h, 25), "the task was not that long");
    H_EXPECT (h, 5000, h_result (h, 25), "no result");
    cr_assert_eq (h->hello_count, 1, "the node thought the broker was dead");
    h_destroy (&h);
}

//  Stores (id, 1) at the sink and checks that the node stops sending its
//  result.
static void
h_store_and_expect_quiet (h_t *h, uint64_t id)
{
    h_store (h, h->sink_id, id, 1);
    h_pump (h, 100);
    size_t receipts = h_result (h, id)->receipts;
    h_pump (h, 600);
    cr_assert_eq (h_result (h, id)->receipts, receipts,
                  "still resent after STORED");
}

Test (worker, unstored_results_are_sent_again, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h->auto_store = false;
    h_join (h, 100, 3, 1);
    h_dispatch_text (h, 26, "echo", "again");
    H_EXPECT (h, 5000, h_result (h, 26), "no result");
    //  Not STORED: it comes again after heartbeat_ms * liveness
    H_EXPECT (h, 5000, h_result (h, 26)->receipts >= 2, "never resent");
    //  Stored: it stops
    h_store_and_expect_quiet (h, 26);
    h->auto_store = true;
    h_destroy (&h);
}

Test (worker, a_result_refused_for_a_full_sink_is_sent_again_soon,
      .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h->auto_store = false;
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 31, "echo", "full");
    H_EXPECT (h, 5000, h_result (h, 31), "no result");
    int64_t refused_at = zclock_mono ();
    h_store_code (h, h->sink_id, 31, 1, DROVER_EFULL);
    //  Kept, and sent again after RESULTS_FULL_RETRY_MS (250 ms), long
    //  before the resend of an unanswered result (5 s here)
    H_EXPECT (h, 3000, h_result (h, 31)->receipts >= 2,
              "the refused result was dropped or not resent");
    cr_assert_lt (zclock_mono () - refused_at, 2500 * s_slow ());
    h_store_and_expect_quiet (h, 31);
    h->auto_store = true;
    h_destroy (&h);
}

Test (worker, results_wait_for_the_one_in_flight_then_go_together,
      .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "2", NULL};
    h_start (h, extra);
    h->auto_store = false;
    h_join (h, 1000, 5, 2);
    h_dispatch_text (h, 41, "echo", "first");
    H_EXPECT (h, 5000, h_result (h, 41), "no result");
    //  Nothing in flight: the first left alone, at once. While it waits
    //  for its STORED, the next results wait too
    cr_assert_eq (h->result_messages, 1);
    for (uint64_t id = 42; id < 44; id++)
        h_dispatch_text (h, id, "echo", "more");
    h_pump (h, 500);
    cr_assert_null (h_result (h, 42), "sent while another was in flight");
    cr_assert_null (h_result (h, 43), "sent while another was in flight");
    //  STORED for the first: both go, in one RESULT
    h_store (h, h->sink_id, 41, 1);
    H_EXPECT (h, 5000, h_result (h, 42) && h_result (h, 43),
              "held results not sent after STORED");
    cr_assert_eq (h->result_messages, 2, "%zu RESULT messages",
                  h->result_messages);
    h->auto_store = true;
    h_destroy (&h);
}

Test (worker, automatic_lookahead_grows_with_short_tasks_not_long_ones,
      .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", "--lookahead", "auto", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    drover_msg_t *hello = drover_packet_msg (h->hello);
    cr_assert_eq (hello->lookahead, 256, "auto announces 256 per child");
    //  Before any outcome: one task per child
    h_pump (h, 200);
    cr_assert_eq (h_open_credit (h), 1);
    //  After a short task: room for 2 ms of them per child, at most 256
    h_dispatch_text (h, 51, "echo", "short");
    H_EXPECT (h, 5000, h_result (h, 51), "no result");
    H_EXPECT (h, 5000, h_open_credit (h) > 1,
              "no lookahead after a short task");
    uint64_t open = h_open_credit (h);
    cr_assert_leq (open, 257);
    //  Tasks of 150 ms, one at a time: the average passes 100 ms after
    //  nine, and then the node asks for nothing while it holds credit
    for (uint64_t id = 52; id < 62; id++) {
        H_EXPECT (h, 5000, h_open_credit (h) > 0, "no credit");
        h_dispatch_text (h, id, "sleep", "150");
        H_EXPECT (h, 5000, h_result (h, id), "the sleep did not finish");
    }
    h_pump (h, 100);
    uint64_t credit = h->credit;
    h_pump (h, 300);
    cr_assert_eq (h->credit, credit, "credit asked for with long tasks");
    cr_assert_leq (h_open_credit (h), open > 12 ? open - 10 : 2,
                   "open credit %" PRIu64 " of %" PRIu64, h_open_credit (h),
                   open);
    h_destroy (&h);
}

//  Leases one chunk of the texts to the node (SPEC.md 7.7).
static void
h_dispatch_chunk (h_t *h, uint64_t id, const char *handler,
                  const char *const *texts, uint32_t count)
{
    drover_chunk_writer_t writer;
    drover_chunk_writer_init (&writer, 0);
    for (uint32_t i = 0; i < count; i++)
        cr_assert_eq (drover_chunk_add (&writer, texts[i], strlen (texts[i])),
                      0);
    uint8_t *data;
    size_t size;
    cr_assert_eq (drover_chunk_finish (&writer, &data, &size), 0);
    drover_task_t item;
    memset (&item, 0, sizeof item);
    item.id = id;
    item.attempt = 1;
    item.handler = handler;
    item.items = count;
    item.payload.data = data;
    item.payload.size = size;
    h_send_dispatch (h, &item, 1);
    free (data);
}

Test (worker, a_chunk_runs_the_handler_per_input_and_answers_one_result,
      .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    cr_assert (drover_packet_msg (h->hello)->chunks, "HELLO without chunks");
    const char *texts[] = {"alpha", "", "gamma"};
    h_dispatch_chunk (h, 71, "echo", texts, 3);
    H_EXPECT (h, 5000, h_result (h, 71), "no result");
    //  fail: every input fails on its own, the chunk itself succeeds
    const char *failing[] = {"no good", "worse"};
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "no credit");
    h_dispatch_chunk (h, 72, "fail", failing, 2);
    H_EXPECT (h, 5000, h_result (h, 72), "no result");
    h_outcome_t *result = h_result (h, 71);
    cr_assert_eq (result->code, 0);
    drover_chunk_reader_t reader;
    cr_assert_eq (drover_chunk_open (&reader, zchunk_data (result->payload),
                                     zchunk_size (result->payload), 3),
                  0);
    for (size_t i = 0; i < 3; i++) {
        int32_t code;
        const void *output;
        size_t size;
        cr_assert_eq (
            drover_chunk_next_outcome (&reader, &code, &output, &size), 1);
        cr_assert_eq (code, 0);
        cr_assert_eq (size, strlen (texts[i]));
        cr_assert (!memcmp (output, texts[i], size));
    }
    result = h_result (h, 72);
    cr_assert_eq (result->code, 0);
    cr_assert_eq (drover_chunk_open (&reader, zchunk_data (result->payload),
                                     zchunk_size (result->payload), 2),
                  0);
    for (size_t i = 0; i < 2; i++) {
        int32_t code;
        const void *reason;
        size_t size;
        cr_assert_eq (
            drover_chunk_next_outcome (&reader, &code, &reason, &size), 1);
        cr_assert_eq (code, DROVER_EFAILED);
        cr_assert_eq (size, strlen (failing[i]));
        cr_assert (!memcmp (reason, failing[i], size));
    }
    //  A payload that is no chunk of that many inputs fails the task
    drover_task_t item;
    memset (&item, 0, sizeof item);
    item.id = 73;
    item.attempt = 1;
    item.handler = "echo";
    item.items = 2;
    item.payload.data = "\x91\xc4\x01x";
    item.payload.size = 4;
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "no credit");
    h_send_dispatch (h, &item, 1);
    H_EXPECT (h, 5000, h_fail (h, 73), "a malformed chunk was not failed");
    cr_assert_eq (h_fail (h, 73)->code, DROVER_EINVAL);
    cr_assert (strstr (h_fail (h, 73)->reason, "2 bin inputs"), "%s",
               h_fail (h, 73)->reason);
    //  The child is still there
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "no credit");
    h_dispatch_text (h, 74, "echo", "after");
    H_EXPECT (h, 5000, h_result (h, 74), "no result after the bad chunk");
    h_destroy (&h);
}

//  The broker revokes task id (attempt 1), as a cancel does.
static void
h_revoke (h_t *h, uint64_t id)
{
    drover_task_t item;
    memset (&item, 0, sizeof item);
    item.id = id;
    item.attempt = 1;
    item.code = DROVER_ECANCELLED;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_REVOKE);
    msg.tasks = &item;
    msg.task_count = 1;
    h_send_broker (h, &msg);
}

//  Leases several tasks in one DISPATCH: ids from first, one handler and
//  text each.
static void
h_dispatch_many (h_t *h, uint64_t first, const char *const *handlers,
                 const char *const *texts, size_t count)
{
    drover_task_t items[8];
    cr_assert_leq (count, 8);
    memset (items, 0, sizeof items);
    for (size_t i = 0; i < count; i++) {
        items[i].id = first + i;
        items[i].attempt = 1;
        items[i].handler = handlers[i];
        items[i].payload.data = texts[i];
        items[i].payload.size = strlen (texts[i]);
    }
    h_send_dispatch (h, items, count);
}

//  Runs echo tasks 1 to 20, one at a time, so that the node's moving
//  average of run times says tasks are tiny (it then pipelines).
static void
h_warm (h_t *h)
{
    for (uint64_t id = 1; id <= 20; id++) {
        H_EXPECT (h, 5000, h_open_credit (h) > 0, "no credit");
        h_dispatch_text (h, id, "echo", "warm");
        H_EXPECT (h, 5000, h_result (h, id), "no result");
    }
}

//  Leases count tasks from id first as fast as credit comes, up to 8 per
//  DISPATCH; task first + i runs handlers[i % period] on texts[i % period].
static void
h_dispatch_as_credit_comes (h_t *h, uint64_t first, uint64_t count,
                            const char *const *handlers,
                            const char *const *texts, size_t period)
{
    for (uint64_t sent = 0; sent < count;) {
        H_EXPECT (h, 5000, h_open_credit (h) > 0, "no credit");
        uint64_t batch = h_open_credit (h) < 8 ? h_open_credit (h) : 8;
        if (batch > count - sent)
            batch = count - sent;
        const char *batch_handlers[8], *batch_texts[8];
        for (uint64_t i = 0; i < batch; i++) {
            batch_handlers[i] = handlers[(sent + i) % period];
            batch_texts[i] = texts[(sent + i) % period];
        }
        h_dispatch_many (h, first + sent, batch_handlers, batch_texts,
                         (size_t)batch);
        sent += batch;
    }
}

//  Starts a node of one child with the automatic lookahead and runs echo
//  tasks until their run times make it pipeline; logged: with -v, its log
//  in h->log (read it with h_stop_for_log).
static h_t *
h_new_pipelining_logged (bool logged)
{
    h_t *h = h_new ();
    if (logged)
        snprintf (h->log, sizeof h->log, "%s/node.log", h->tmp);
    const char *extra[] = {
        "-j", "1", "--lookahead", "auto", logged ? "-v" : NULL, NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    h_warm (h);
    H_EXPECT (h, 5000, h_open_credit (h) >= 3, "no lookahead");
    return h;
}

static h_t *
h_new_pipelining (void)
{
    return h_new_pipelining_logged (false);
}

Test (worker, a_task_sent_behind_one_that_crashes_its_child_runs_again,
      .timeout = 30)
{
    h_t *h = h_new_pipelining ();
    //  The echoes are sent to the child behind the crash, which kills it
    const char *handlers[] = {"crash", "echo", "echo", "echo", "echo"};
    const char *texts[] = {"boom", "behind", "behind", "behind", "behind"};
    h_dispatch_many (h, 101, handlers, texts, 5);
    H_EXPECT (h, 5000, h_fail (h, 101), "the crash was not reported");
    cr_assert_eq (h_fail (h, 101)->code, DROVER_ECRASHED);
    for (uint64_t id = 102; id <= 105; id++) {
        H_EXPECT (h, 5000, h_result (h, id), "task %" PRIu64 " never ran", id);
        cr_assert_eq (h_result (h, id)->code, 0);
        cr_assert_null (h_fail (h, id), "task %" PRIu64 " failed", id);
        cr_assert_eq (zchunk_size (h_result (h, id)->payload), 6);
    }
    h_destroy (&h);
}

//  The whole of a file as a string (free it), or NULL.
static char *
s_read_file (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return NULL;
    size_t size = 0, capacity = 4096;
    char *text = (char *)malloc (capacity);
    cr_assert (text);
    size_t got;
    while ((got = fread (text + size, 1, capacity - size - 1, file)) > 0) {
        size += got;
        if (capacity - size - 1 == 0) {
            capacity *= 2;
            text = (char *)realloc (text, capacity);
            cr_assert (text);
        }
    }
    fclose (file);
    text[size] = 0;
    return text;
}

//  Drains the node with SIGTERM and returns its whole log (free it): it
//  writes through stdio, so the log is complete once it left.
static char *
h_stop_for_log (h_t *h)
{
    kill (h->pid, SIGTERM);
    h->auto_store = true;
    cr_assert (h_wait_exit (h, 15000), "the node did not drain");
    char *log = s_read_file (h->log);
    cr_assert (log, "no log");
    return log;
}

//  How many times the node's log (-v) says it sent task id (of handler)
//  to a child.
static size_t
s_times_sent_of (const char *log, uint64_t id, const char *handler)
{
    char needle[96];
    snprintf (needle, sizeof needle, "task %" PRIu64 "#1 (%s) -> child", id,
              handler);
    size_t count = 0;
    for (const char *at = strstr (log, needle); at;
         at = strstr (at + 1, needle))
        count++;
    return count;
}

static size_t
s_times_sent (const char *log, uint64_t id)
{
    return s_times_sent_of (log, id, "echo");
}

Test (worker, a_crash_is_reported_once_and_what_ran_before_it_runs_once,
      .timeout = 60)
{
    h_t *h = h_new_pipelining_logged (true);
    //  Rounds of five echoes, a crash and two echoes, sent ahead at once:
    //  the child dies with the echoes' outcomes often still in its pipe
    for (uint64_t round = 0; round < 30; round++) {
        uint64_t first = 100 + round * 10;
        const char *handlers[] = {"echo", "echo",  "echo", "echo",
                                  "echo", "crash", "echo", "echo"};
        const char *texts[] = {"a", "b", "c", "d", "e", "boom", "f", "g"};
        h_dispatch_as_credit_comes (h, first, 8, handlers, texts, 8);
        H_EXPECT (h, 5000, h_fail (h, first + 5), "the crash was not reported");
        cr_assert_eq (h_fail (h, first + 5)->code, DROVER_ECRASHED);
        for (uint64_t id = first; id < first + 8; id++)
            if (id != first + 5)
                H_EXPECT (h, 5000, h_result (h, id),
                          "task %" PRIu64 " never ran", id);
    }
    char *log = h_stop_for_log (h);
    for (uint64_t round = 0; round < 30; round++) {
        uint64_t first = 100 + round * 10;
        cr_assert_eq (s_times_sent_of (log, first + 5, "crash"), 1,
                      "crash %" PRIu64 " ran on %zu children", first + 5,
                      s_times_sent_of (log, first + 5, "crash"));
        //  What ran before the crash went to one child; what was behind
        //  it, to the dead child (if sent ahead) and to the next
        for (uint64_t id = first; id < first + 8; id++) {
            if (id == first + 5)
                continue;
            size_t sent = s_times_sent (log, id);
            cr_assert (id < first + 5 ? sent == 1 : sent >= 1 && sent <= 2,
                       "task %" PRIu64 " was sent %zu times", id, sent);
        }
    }
    free (log);
    h_destroy (&h);
}

Test (worker, a_task_dispatched_twice_runs_once_wherever_it_waits,
      .timeout = 30)
{
    h_t *h = h_new_pipelining_logged (true);
    //  201 runs 300 ms and 202 is sent ahead to the same child at once; a
    //  second DISPATCH of 202 finds it waiting in the child's channel
    const char *handlers[] = {"sleep", "echo"};
    const char *texts[] = {"300", "ahead"};
    h_dispatch_many (h, 201, handlers, texts, 2);
    h_dispatch_text (h, 202, "echo", "ahead");
    //  203 twice in one DISPATCH: the second finds it in the node's queue
    H_EXPECT (h, 5000, h_open_credit (h) >= 2, "no credit");
    const char *twice_handlers[] = {"echo", "echo"};
    const char *twice_texts[] = {"queued", "queued"};
    drover_task_t items[2];
    memset (items, 0, sizeof items);
    for (size_t i = 0; i < 2; i++) {
        items[i].id = 203;
        items[i].attempt = 1;
        items[i].handler = twice_handlers[i];
        items[i].payload.data = twice_texts[i];
        items[i].payload.size = strlen (twice_texts[i]);
    }
    h_send_dispatch (h, items, 2);
    for (uint64_t id = 201; id <= 203; id++)
        H_EXPECT (h, 5000, h_result (h, id), "task %" PRIu64 " never ran", id);
    char *log = h_stop_for_log (h);
    //  The set-up held: 202 was sent ahead, behind 201
    const char *ahead = strstr (log, "task 202#1 (echo) -> child");
    cr_assert (ahead, "202 never sent to a child");
    const char *end = strchr (ahead, '\n');
    cr_assert (end && memmem (ahead, (size_t)(end - ahead), ", next", 6),
               "202 was not sent ahead: %.*s", (int)(end ? end - ahead : 60),
               ahead);
    for (uint64_t id = 202; id <= 203; id++) {
        cr_assert_eq (s_times_sent (log, id), 1,
                      "task %" PRIu64 " was sent to a child %zu times", id,
                      s_times_sent (log, id));
        char warning[64];
        snprintf (warning, sizeof warning,
                  "task %" PRIu64 "#1 dispatched twice; ignored", id);
        cr_assert (strstr (log, warning), "no '%s' in the log", warning);
    }
    free (log);
    h_destroy (&h);
}

Test (worker, a_retiring_childs_last_outcomes_count_and_nothing_runs_twice,
      .timeout = 60)
{
    h_t *h = h_new ();
    snprintf (h->log, sizeof h->log, "%s/node.log", h->tmp);
    const char *extra[] = {
        "-j", "1",  "--lookahead", "auto", "--max-tasks-per-child",
        "10", "-v", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    h_warm (h);
    //  Tiny tasks as fast as credit comes: each child is sent several
    //  ahead, runs its ten, and leaves with outcomes still in its pipe
    const char *handler = "echo", *text = "tiny";
    h_dispatch_as_credit_comes (h, 101, 1000, &handler, &text, 1);
    for (uint64_t id = 101; id <= 1100; id++) {
        H_EXPECT (h, 10000, h_result (h, id), "task %" PRIu64 " never ran", id);
        cr_assert_null (h_fail (h, id), "task %" PRIu64 " failed", id);
    }
    char *log = h_stop_for_log (h);
    for (uint64_t id = 101; id <= 1100; id++)
        cr_assert_eq (s_times_sent (log, id), 1,
                      "task %" PRIu64 " was sent to %zu children", id,
                      s_times_sent (log, id));
    cr_assert_null (strstr (log, "while idle"),
                    "a retired child was taken for a crash");
    free (log);
    h_destroy (&h);
}

Test (worker, tasks_sent_ahead_to_a_retiring_child_run_on_its_successor,
      .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {
        "-j", "1", "--lookahead", "auto", "--max-tasks-per-child", "5", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    h_warm (h);
    H_EXPECT (h, 5000, h_open_credit (h) >= 3, "no lookahead");
    //  Sixteen, as fast as credit comes, while tasks look tiny: they are
    //  sent ahead
    const char *handler = "ppid", *text = "";
    h_dispatch_as_credit_comes (h, 101, 16, &handler, &text, 1);
    zhashx_t *runs = zhashx_new (); //  pid -> tasks it ran
    for (uint64_t id = 101; id <= 116; id++) {
        H_EXPECT (h, 10000, h_result (h, id), "task %" PRIu64 " never ran", id);
        cr_assert_null (h_fail (h, id), "task %" PRIu64 " failed", id);
        char pid[32] = "";
        size_t size = zchunk_size (h_result (h, id)->payload);
        cr_assert (size > 0 && size < sizeof pid);
        memcpy (pid, zchunk_data (h_result (h, id)->payload), size);
        size_t count = (size_t)zhashx_lookup (runs, pid) + 1;
        cr_assert_leq (count, 5, "child %s ran more than 5 tasks", pid);
        zhashx_update (runs, pid, (void *)count);
    }
    cr_assert_geq (zhashx_size (runs), 4, "16 tasks on %zu children",
                   zhashx_size (runs));
    zhashx_destroy (&runs);
    h_destroy (&h);
}

Test (worker, a_revoked_task_sent_behind_another_never_runs_when_the_child_dies,
      .timeout = 30)
{
    h_t *h = h_new_pipelining ();
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s 30\n", path);
    //  The second of three tasks sent behind the first is revoked
    const char *handlers[] = {"mark", "echo", "echo", "echo"};
    const char *texts[] = {payload, "runs", "revoked", "runs"};
    h_dispatch_many (h, 401, handlers, texts, 4);
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the first task did not start");
    h_revoke (h, 403);
    h_pump (h, 100);
    //  The child dies before it starts the tasks behind the first
    kill (s_read_pid (path), SIGKILL);
    H_EXPECT (h, 5000, h_fail (h, 401), "the crash was not reported");
    H_EXPECT (h, 5000, h_result (h, 402) && h_result (h, 404),
              "the tasks that were not revoked did not run again");
    h_pump (h, 300);
    cr_assert_null (h_fail (h, 402));
    cr_assert_null (h_fail (h, 404));
    cr_assert_null (h_result (h, 403), "a revoked task ran elsewhere");
    cr_assert_null (h_fail (h, 403), "a revoked task was reported");
    h_destroy (&h);
}

Test (worker, a_task_sent_behind_a_long_one_moves_to_an_idle_child,
      .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "2", "--lookahead", "auto", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    h_warm (h);
    H_EXPECT (h, 5000, h_open_credit (h) >= 3, "no lookahead");
    //  A long task on the first child, a short one on the second, and
    //  echoes sent to both to run after theirs: 303 and 305 to the first
    const char *handlers[] = {"sleep", "sleep", "echo", "echo", "echo"};
    const char *texts[] = {"1500", "1", "moved", "moved", "moved"};
    int64_t start = zclock_mono ();
    h_dispatch_many (h, 301, handlers, texts, 5);
    for (uint64_t id = 303; id <= 305; id++)
        H_EXPECT (h, 5000, h_result (h, id), "echo %" PRIu64 " never ran", id);
    cr_assert_lt (zclock_mono () - start, 1000,
                  "an echo waited for the long task");
    H_EXPECT (h, 5000, h_result (h, 301), "the long task did not finish");
    h_pump (h, 300);
    for (uint64_t id = 303; id <= 305; id++) {
        cr_assert_eq (h_result (h, id)->receipts, 1,
                      "echo %" PRIu64 " reported twice", id);
        cr_assert_null (h_fail (h, id));
    }
    h_destroy (&h);
}

Test (worker, a_revoked_task_sent_behind_another_never_reports, .timeout = 30)
{
    h_t *h = h_new_pipelining ();
    //  Three tasks sent behind a sleep; the middle one is revoked
    const char *handlers[] = {"sleep", "echo", "echo", "echo"};
    const char *texts[] = {"400", "before", "revoked", "later"};
    h_dispatch_many (h, 201, handlers, texts, 4);
    h_pump (h, 100);
    h_revoke (h, 203);
    H_EXPECT (h, 5000, h_result (h, 201), "the sleep did not finish");
    H_EXPECT (h, 5000, h_result (h, 202), "the task before it did not run");
    H_EXPECT (h, 5000, h_result (h, 204), "the task after it did not run");
    h_pump (h, 300);
    cr_assert_null (h_result (h, 203), "a revoked task reported a result");
    cr_assert_null (h_fail (h, 203), "a revoked task reported a failure");
    h_destroy (&h);
}

Test (worker, revoke_kills_the_task_silently, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s 30\n", path);
    h_dispatch (h, 27, "mark", payload, strlen (payload), 0);
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    pid_t child = s_read_pid (path);
    h_revoke (h, 27);
    H_EXPECT (h, 5000, s_group_gone (child), "the revoked task still runs");
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "credit not given back");
    h_pump (h, 300);
    cr_assert_null (h_fail (h, 27), "a revoked attempt was reported");
    cr_assert_null (h_result (h, 27), "a revoked attempt was reported");
    h_dispatch_text (h, 28, "echo", "next");
    H_EXPECT (h, 5000, h_result (h, 28), "no child after the revoke");
    h_destroy (&h);
}

Test (worker, revoke_terms_then_kills_after_the_grace_period, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", "--kill-grace-ms", "600", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s 30\n", path);
    h_dispatch (h, 31, "stubborn", payload, strlen (payload), 0);
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    pid_t child = s_read_pid (path);
    int64_t revoked = zclock_mono ();
    h_revoke (h, 31);
    //  The command ignores SIGTERM: it lives through the grace period
    h_pump (h, 300);
    cr_assert_not (s_group_gone (child), "killed before the grace period");
    H_EXPECT (h, 5000, s_group_gone (child), "the revoked task still runs");
    int64_t took = zclock_mono () - revoked;
    cr_assert_geq (took, 550, "SIGKILL after %lld ms, grace 600 ms",
                   (long long)took);
    cr_assert_null (h_fail (h, 31), "a revoked attempt was reported");
    h_dispatch_text (h, 32, "echo", "next");
    H_EXPECT (h, 5000, h_result (h, 32), "no child after the revoke");
    h_destroy (&h);
}

Test (worker, sigterm_drains_then_bye, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s %d\n", path, s_slow () > 1 ? 5 : 0);
    if (s_slow () == 1)
        snprintf (payload, sizeof payload, "%s 0.5\n", path);
    h_dispatch (h, 29, "mark", payload, strlen (payload), 0);
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    kill (h->pid, SIGTERM);
    H_EXPECT (h, 5000, h->drains == 1, "no DRAIN");
    cr_assert_null (h_result (h, 29), "the task was not that short");
    H_EXPECT (h, 5000, h->byes == 1, "no BYE");
    h_outcome_t *result = h_result (h, 29);
    cr_assert (result, "BYE before the leased task's result");
    cr_assert_eq (zchunk_size (result->payload), 5);
    cr_assert (!memcmp (zchunk_data (result->payload), "done\n", 5));
    cr_assert (h_wait_exit (h, 5000), "the node did not exit after BYE");
    cr_assert (WIFEXITED (h->exit_status) && WEXITSTATUS (h->exit_status) == 0,
               "wait status %#x", h->exit_status);
    cr_assert_eq (h->credit, h->credit_at_drain, "credit asked after DRAIN");
    h_destroy (&h);
}

Test (worker, drain_from_the_broker, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "2", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    h_dispatch_text (h, 30, "sleep", "200");
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_DRAIN);
    msg.reason = "broker shutting down";
    h_send_broker (h, &msg);
    H_EXPECT (h, 5000, h->byes == 1, "no BYE");
    cr_assert (h_result (h, 30), "BYE before the leased task's result");
    cr_assert_eq (h->drains, 1);
    cr_assert (h_wait_exit (h, 5000), "the node did not exit");
    cr_assert (WIFEXITED (h->exit_status) && WEXITSTATUS (h->exit_status) == 0);
    h_destroy (&h);
}

Test (worker, children_die_with_the_supervisor, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "3", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 3);
    pid_t children[8];
    H_WAIT (h, 5000, s_children_of (h->pid, children, 8) == 3);
    size_t count = s_children_of (h->pid, children, 8);
    cr_assert_eq (count, 3);
    kill (h->pid, SIGKILL);
    waitpid (h->pid, NULL, 0);
    h->pid = 0;
    int64_t deadline = zclock_mono () + 5000;
    for (size_t i = 0; i < count; i++) {
        //  They are ours now (subreaper): reap them as they die
        while (!s_process_gone (children[i]) && zclock_mono () < deadline)
            h_poll (h, 10);
        waitpid (children[i], NULL, WNOHANG);
        cr_assert (s_process_gone (children[i]), "child %d outlived the node",
                   (int)children[i]);
    }
    h_destroy (&h);
}

//  PDEATHSIG reaches the child only; the command's shell has its own, but
//  what the shell started has none. The child kills its process group as
//  it dies, so the `sleep` goes too.
Test (worker, grandchildren_die_with_the_supervisor, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s 30\n", path);
    h_dispatch (h, 35, "mark", payload, strlen (payload), 0);
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    pid_t child = s_read_pid (path);
    pid_t shell = 0, sleeper = 0;
    H_WAIT (h, 5000,
            s_children_of (child, &shell, 1) == 1
                && s_children_of (shell, &sleeper, 1) == 1);
    cr_assert (sleeper > 0, "the command's sleep did not start");
    cr_assert_eq (getpgid (sleeper), child, "the sleep left the group");
    kill (h->pid, SIGKILL);
    waitpid (h->pid, NULL, 0);
    h->pid = 0;
    H_EXPECT (h, 5000, s_group_gone (child),
              "process group %d outlived the node", (int)child);
    cr_assert (s_process_gone (sleeper), "the sleep outlived the node");
    h_destroy (&h);
}

Test (worker, silent_broker_means_a_new_session, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 100, 3, 1);
    zframe_t *first = zframe_dup (h->node_id);
    h->silent = true;
    H_EXPECT (h, 5000, h->hello_count == 2, "no new HELLO");
    cr_assert (!zframe_eq (first, h->node_id), "the session kept its socket");
    zframe_destroy (&first);
    h->silent = false;
    cr_assert_eq (h->credit, 0, "credit before the new WELCOME");
    h_welcome (h, 1000, 5);
    H_EXPECT (h, 5000, h->credit == 1, "no credit in the new session");
    h_dispatch_text (h, 31, "echo", "new");
    H_EXPECT (h, 5000, h_result (h, 31), "no result");
    h_destroy (&h);
}

Test (worker, bye_estale_means_a_new_session, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_BYE);
    msg.code = DROVER_ESTALE;
    msg.reason = "who are you?";
    h_send_broker (h, &msg);
    H_EXPECT (h, 5000, h->hello_count == 2, "no new HELLO after BYE");
    h_destroy (&h);
}

Test (worker, a_new_session_drops_tasks_sent_ahead_to_children, .timeout = 30)
{
    h_t *h = h_new_pipelining ();
    //  Five echoes sent ahead behind a sleep; then the session ends
    const char *handlers[] = {"sleep", "echo", "echo", "echo", "echo", "echo"};
    const char *texts[] = {"500", "a", "b", "c", "d", "e"};
    h_dispatch_many (h, 501, handlers, texts, 6);
    h_pump (h, 100);
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_BYE);
    msg.code = DROVER_ESTALE;
    msg.reason = "who are you?";
    h_send_broker (h, &msg);
    H_EXPECT (h, 5000, h->hello_count == 2, "no new HELLO after BYE");
    h_welcome (h, 1000, 5);
    //  The sleep ran on (its result goes to the sink); the echoes had not
    //  started: the broker has released them, and they do not run here
    H_EXPECT (h, 5000, h_result (h, 501), "the running task was lost");
    h_pump (h, 300);
    for (uint64_t id = 502; id <= 506; id++) {
        cr_assert_null (h_result (h, id), "task %" PRIu64 " ran", id);
        cr_assert_null (h_fail (h, id), "task %" PRIu64 " failed", id);
    }
    //  The child serves the new session
    H_EXPECT (h, 5000, h_open_credit (h) > 0, "no credit");
    h_dispatch_text (h, 507, "echo", "new");
    H_EXPECT (h, 5000, h_result (h, 507), "no result in the new session");
    h_destroy (&h);
}

Test (worker, garbage_is_dropped, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    //  One frame; a wrong signature; a good frame layout with a bad header;
    //  a DISPATCH whose payload frame is missing; a command the node does
    //  not take
    zmsg_t *junk = zmsg_new ();
    zmsg_append (junk, &(zframe_t *){zframe_dup (h->node_id)});
    zmsg_addstr (junk, "junk");
    zmsg_send (&junk, h->broker);
    junk = zmsg_new ();
    zmsg_append (junk, &(zframe_t *){zframe_dup (h->node_id)});
    zmsg_addstr (junk, "XXXX");
    zmsg_addmem (junk, "\x21", 1);
    zmsg_addmem (junk, "\x80", 1);
    zmsg_send (&junk, h->broker);
    junk = zmsg_new ();
    zmsg_append (junk, &(zframe_t *){zframe_dup (h->node_id)});
    zmsg_addmem (junk, DROVER_SIGNATURE, 4);
    zmsg_addmem (junk, "\x21", 1);
    zmsg_addmem (junk, "\xc1\xc1", 2);
    zmsg_send (&junk, h->broker);
    drover_task_t item;
    memset (&item, 0, sizeof item);
    item.id = 32;
    item.attempt = 1;
    item.handler = "echo";
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_DISPATCH);
    msg.tasks = &item;
    msg.task_count = 1;
    uint8_t *header;
    size_t header_size;
    cr_assert_eq (drover_msg_encode (&msg, &header, &header_size), 0);
    junk = zmsg_new ();
    zmsg_append (junk, &(zframe_t *){zframe_dup (h->node_id)});
    zmsg_addmem (junk, DROVER_SIGNATURE, 4);
    zmsg_addmem (junk, "\x21", 1);
    zmsg_addmem (junk, header, header_size);
    zmsg_send (&junk, h->broker);
    free (header);
    drover_msg_init (&msg, DROVER_STATS);
    msg.ref = 1;
    h_send_broker (h, &msg);
    //  The node goes on as if nothing happened
    h_dispatch_text (h, 33, "echo", "fine");
    H_EXPECT (h, 5000, h_result (h, 33), "the node stopped serving");
    cr_assert_null (h_fail (h, 32));
    H_EXPECT (h, 5000, h_open_credit (h) == 1, "open credit %" PRIu64,
              h_open_credit (h));
    //  The sink can send garbage too
    cr_assert (h->sink_id);
    junk = zmsg_new ();
    zmsg_append (junk, &(zframe_t *){zframe_dup (h->sink_id)});
    zmsg_addstr (junk, "junk");
    zmsg_send (&junk, h->sink);
    drover_msg_init (&msg, DROVER_DONE);
    drover_task_t done;
    memset (&done, 0, sizeof done);
    done.id = 33;
    done.attempt = 1;
    msg.tasks = &done;
    msg.task_count = 1;
    cr_assert_eq (drover_wire_send (h->sink, h->sink_id, &msg, NULL), 0);
    h_dispatch_text (h, 37, "echo", "still fine");
    H_EXPECT (h, 5000, h_result (h, 37), "the node stopped serving");
    h_destroy (&h);
}

Test (worker, c_handlers_through_libdrover, .timeout = 30)
{
    h_t *h = h_new ();
    char example[PATH_MAX];
    s_build_path (example, sizeof example, "examples/worker_example");
    const char *argv[] = {example, h->broker_ep, "2", NULL};
    h->pid = s_spawn (argv, NULL, -1, -1);
    h_join (h, 1000, 5, 2);
    drover_msg_t *hello = drover_packet_msg (h->hello);
    cr_assert_eq (hello->handler_count, 5);
    cr_assert_str_eq (hello->handlers[0], "upper");
    cr_assert_str_eq (hello->handlers[1], "wordcount");
    h_dispatch_text (h, 34, "upper", "hello world");
    h_dispatch_text (h, 35, "wordcount", "one two  three\nfour");
    H_EXPECT (h, 5000, h_result (h, 34) && h_result (h, 35), "no results");
    cr_assert_eq (zchunk_size (h_result (h, 34)->payload), 11);
    cr_assert (
        !memcmp (zchunk_data (h_result (h, 34)->payload), "HELLO WORLD", 11));
    cr_assert_eq (zchunk_size (h_result (h, 35)->payload), 1);
    cr_assert_eq (zchunk_data (h_result (h, 35)->payload)[0], '4');
    //  A C handler's failure carries its message
    h_dispatch (h, 36, "wordcount", "a\0b", 3, 0);
    H_EXPECT (h, 5000, h_fail (h, 36), "no FAIL");
    cr_assert_eq (h_fail (h, 36)->code, DROVER_EFAILED);
    cr_assert (strstr (h_fail (h, 36)->reason, "NUL"));
    h_destroy (&h);
}

Test (worker, exec_killed_by_a_signal_is_a_crash, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 40, "segv", "");
    H_EXPECT (h, 5000, h_fail (h, 40), "no FAIL");
    cr_assert_eq (h_fail (h, 40)->code, DROVER_ECRASHED);
    cr_assert_eq (h_fail (h, 40)->signal, SIGSEGV);
    h_destroy (&h);
}

Test (worker, stderr_tail_is_bounded, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 41, "noisy", "");
    H_EXPECT (h, 5000, h_fail (h, 41), "no FAIL");
    h_outcome_t *fail = h_fail (h, 41);
    cr_assert_eq (fail->exit_status, 1);
    size_t length = strlen (fail->reason);
    cr_assert (length > 1000 && length <= 2048 + 3, "reason of %zu octets",
               length);
    cr_assert (!strcmp (fail->reason + length - 4, "xEND"), "tail: %s",
               fail->reason + length - 10);
    cr_assert (!strncmp (fail->reason, "...x", 4));
    h_destroy (&h);
}

Test (worker, idle_child_killed_is_replaced, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    pid_t first;
    H_WAIT (h, 5000, s_children_of (h->pid, &first, 1) == 1);
    cr_assert_eq (s_children_of (h->pid, &first, 1), 1);
    kill (first, SIGKILL);
    pid_t second = first;
    H_WAIT (h, 5000,
            s_children_of (h->pid, &second, 1) == 1 && second != first);
    cr_assert_neq (second, first, "the child was not replaced");
    h_dispatch_text (h, 42, "echo", "again");
    H_EXPECT (h, 5000, h_result (h, 42), "no result");
    cr_assert_eq (zhashx_size (h->fails), 0, "an idle death is no failure");
    h_destroy (&h);
}

Test (worker, new_sink_gets_unstored_results, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h->auto_store = false;
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 43, "echo", "moving");
    H_EXPECT (h, 5000, h_result (h, 43), "no result");
    //  The sink is replaced before it stored the result: the broker says
    //  so in a new WELCOME, and the node sends the result there at once
    zsock_t *old = h->sink;
    zpoller_remove (h->poller, old);
    h->sink = s_router (h->sink_ep, sizeof h->sink_ep);
    zsock_destroy (&old);
    zhashx_purge (h->results);
    zpoller_add (h->poller, h->sink);
    h->auto_store = true;
    h_welcome (h, 1000, 5);
    H_EXPECT (h, 2000, h_result (h, 43), "the new sink got no result");
    cr_assert_eq (zchunk_size (h_result (h, 43)->payload), 6);
    h_destroy (&h);
}

Test (worker, restarted_broker_gets_credit_again, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "2", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    h_pump (h, 100);
    cr_assert_eq (h->credit, 2);
    //  The same session, but a broker with another instance
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_WELCOME);
    msg.instance = "test-broker-2";
    msg.endpoint = h->sink_ep;
    msg.heartbeat_ms = 1000;
    msg.liveness = 5;
    msg.max_payload = DROVER_MAX_PAYLOAD;
    msg.max_batch = DROVER_MAX_BATCH;
    h_send_broker (h, &msg);
    H_EXPECT (h, 5000, h->credit == 4, "credit %" PRIu64 " after a restart",
              h->credit);
    h_destroy (&h);
}

Test (worker, second_signal_stops_at_once, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s 30\n", path);
    h_dispatch (h, 50, "mark", payload, strlen (payload), 0);
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    pid_t child = s_read_pid (path);
    kill (h->pid, SIGTERM);
    H_EXPECT (h, 5000, h->drains == 1, "no DRAIN");
    kill (h->pid, SIGINT);
    cr_assert (h_wait_exit (h, 5000), "a second signal did not stop it");
    cr_assert (WIFEXITED (h->exit_status) && WEXITSTATUS (h->exit_status) == 1,
               "wait status %#x", h->exit_status);
    H_EXPECT (h, 2000, h->byes == 1, "no BYE");
    H_EXPECT (h, 5000, s_group_gone (child), "the task survived");
    cr_assert_null (h_result (h, 50));
    h_destroy (&h);
}

Test (worker, drain_deadline_stops_the_node, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", "--drain-timeout", "300", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s 30\n", path);
    h_dispatch (h, 51, "mark", payload, strlen (payload), 0);
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    pid_t child = s_read_pid (path);
    int64_t start = zclock_mono ();
    kill (h->pid, SIGTERM);
    cr_assert (h_wait_exit (h, 5000), "the drain deadline did not stop it");
    cr_assert (zclock_mono () - start >= 300);
    cr_assert (WIFEXITED (h->exit_status) && WEXITSTATUS (h->exit_status) == 1,
               "wait status %#x", h->exit_status);
    H_EXPECT (h, 5000, s_group_gone (child), "the task survived");
    h_destroy (&h);
}

Test (worker, revoke_of_a_waiting_task, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", "--lookahead", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s 30\n", path);
    h_dispatch (h, 52, "mark", payload, strlen (payload), 0);
    h_dispatch_text (h, 53, "echo", "waiting");
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    //  Revoke the waiting one first, then the running one
    drover_task_t items[2];
    memset (items, 0, sizeof items);
    items[0].id = 53;
    items[0].attempt = 1;
    items[1].id = 52;
    items[1].attempt = 1;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_REVOKE);
    msg.tasks = items;
    msg.task_count = 2;
    h_send_broker (h, &msg);
    H_EXPECT (h, 5000, s_group_gone (s_read_pid (path)), "still running");
    H_EXPECT (h, 5000, h_open_credit (h) == 2, "open credit %" PRIu64,
              h_open_credit (h));
    h_pump (h, 300);
    cr_assert_eq (zhashx_size (h->results), 0, "a revoked task ran");
    cr_assert_eq (zhashx_size (h->fails), 0, "a revoked task was reported");
    h_destroy (&h);
}

Test (worker, inherited_ignored_sigchld_is_reset, .timeout = 30)
{
    //  A parent that ignores SIGCHLD passes that on through exec; the
    //  kernel would then reap the node's children without telling it, and
    //  a crash would never be reported
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", NULL};
    h_start_ignoring (h, true, extra, NULL, SIGCHLD);
    h_join (h, 1000, 5, 1);
    h_dispatch_text (h, 62, "crash", "");
    H_EXPECT (h, 5000, h_fail (h, 62), "no FAIL for the crash");
    cr_assert_eq (h_fail (h, 62)->code, DROVER_ECRASHED, "code %d",
                  h_fail (h, 62)->code);
    h_dispatch_text (h, 63, "echo", "replaced");
    H_EXPECT (h, 5000, h_result (h, 63), "the crashed child was not replaced");
    h_destroy (&h);
}

Test (worker, late_outcome_of_a_timed_out_task_spares_the_next, .timeout = 30)
{
    //  The child finishes while the supervisor is stopped, past the time
    //  limit: when it resumes it kills the child first, then reads the
    //  outcome. The waiting task must not go to the dying child.
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", "--lookahead", "1", NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    char path[128], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (payload, sizeof payload, "%s %.1f\n", path, 0.3 * s_slow ());
    uint64_t limit = 600 * (uint64_t)s_slow ();
    int64_t start = zclock_mono ();
    h_dispatch (h, 64, "mark", payload, strlen (payload), limit);
    h_dispatch_text (h, 65, "echo", "innocent");
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    pid_t child = s_read_pid (path);
    cr_assert_eq (kill (h->pid, SIGSTOP), 0);
    //  Stopped; the child has reaped its command and waits for a task,
    //  so its outcome is in the channel
    pid_t grandchild;
    H_EXPECT (h, 5000,
              s_process_state (h->pid) == 'T'
                  && s_children_of (child, &grandchild, 1) == 0
                  && s_process_state (child) == 'S',
              "the task did not finish (child state %c)",
              s_process_state (child));
    int64_t wait = start + (int64_t)limit + 100 - zclock_mono ();
    if (wait > 0)
        h_pump (h, (int)wait);
    cr_assert_null (h_result (h, 64));
    cr_assert_eq (kill (h->pid, SIGCONT), 0);
    H_EXPECT (h, 5000, h_result (h, 65) || h_fail (h, 65),
              "no outcome for the waiting task");
    cr_assert_null (h_fail (h, 65), "the waiting task failed: %s: %s",
                    drover_strcode (h_fail (h, 65)->code),
                    h_fail (h, 65)->reason);
    cr_assert_eq (zchunk_size (h_result (h, 65)->payload), 8);
    H_EXPECT (h, 5000, h_result (h, 64) || h_fail (h, 64),
              "no outcome for the timed-out task");
    h_destroy (&h);
}

//  Runs `drover worker ARGS` with env; returns the exit status and the
//  standard error in err (at most size octets).
static int
s_run_cli (const char *const *args, const char *const *env, char *err,
           size_t size, char *out, size_t out_size)
{
    char drover[PATH_MAX];
    s_build_path (drover, sizeof drover, "cli/drover");
    const char *argv[16];
    size_t argc = 0;
    argv[argc++] = drover;
    argv[argc++] = "worker";
    for (size_t i = 0; args[i]; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    int err_pipe[2], out_pipe[2];
    cr_assert_eq (pipe (err_pipe), 0);
    cr_assert_eq (pipe (out_pipe), 0);
    pid_t pid = s_spawn (argv, env, out_pipe[1], err_pipe[1]);
    close (err_pipe[1]);
    close (out_pipe[1]);
    //  Both outputs are small: read one, then the other
    size_t got = 0;
    ssize_t n;
    while (got + 1 < out_size
           && (n = read (out_pipe[0], out + got, out_size - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = 0;
    got = 0;
    while (got + 1 < size
           && (n = read (err_pipe[0], err + got, size - 1 - got)) > 0)
        got += (size_t)n;
    err[got] = 0;
    close (err_pipe[0]);
    close (out_pipe[0]);
    int status;
    cr_assert_eq (waitpid (pid, &status, 0), pid);
    return status;
}

Test (worker, bad_handler_spec_is_a_usage_error, .timeout = 30)
{
    const char *specs[] = {"foo",     "=exec:ls",       "x=python:print",
                           "x=exec:", "x=builtin:nope", "two words=exec:ls"};
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        const char *args[] = {"--handler", specs[i], NULL};
        char err[1024], out[1024];
        int status = s_run_cli (args, NULL, err, sizeof err, out, sizeof out);
        cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 2,
                   "--handler '%s': wait status %#x", specs[i], status);
        cr_assert (strstr (err, "--handler"), "'%s': %s", specs[i], err);
        char *newline = strchr (err, '\n');
        cr_assert (newline && newline[1] == 0, "not one line: %s", err);
    }
    //  The same through the environment
    const char *none[] = {NULL};
    const char *env[] = {"DROVER_HANDLERS=ok=exec:cat\nbroken", NULL};
    char err[1024], out[1024];
    int status = s_run_cli (none, env, err, sizeof err, out, sizeof out);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 2);
    cr_assert (strstr (err, "broken"), "%s", err);
    //  And other wrong arguments
    const char *jobs[] = {"-j", "0", NULL};
    status = s_run_cli (jobs, NULL, err, sizeof err, out, sizeof out);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 2);
    const char *extra[] = {"surplus", NULL};
    status = s_run_cli (extra, NULL, err, sizeof err, out, sizeof out);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 2);
    cr_assert (strstr (err, "surplus"), "%s", err);
    const char *sched[] = {"--child-sched", "idle", NULL};
    status = s_run_cli (sched, NULL, err, sizeof err, out, sizeof out);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 2);
    cr_assert (strstr (err, "--child-sched 'idle'"), "%s", err);
}

Test (worker, help_exits_zero, .timeout = 30)
{
    const char *args[] = {"--help", NULL};
    char err[1024], out[8192];
    int status = s_run_cli (args, NULL, err, sizeof err, out, sizeof out);
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0,
               "wait status %#x", status);
    cr_assert (strstr (out, "usage: drover worker"), "%s", out);
    cr_assert (strstr (out, "--handler"));
    cr_assert (strstr (out, "DROVER_CONNECT"));
    cr_assert (strstr (out, "--kill-grace-ms"));
    cr_assert (strstr (out, "DROVER_KILL_GRACE_MS"));
    cr_assert (strstr (out, "--max-memory-per-child"));
    cr_assert (strstr (out, "DROVER_MAX_MEMORY_PER_CHILD"));
}

//  --------------------------------------------------------------------------
//  Time and memory limits, crash forensics

//  Exec handlers for the limits. Each reads a path, starts a background
//  sleep in its process group, writes the sleep's pid to the path, and
//  waits: 'term' leaves on SIGTERM, after writing PATH.term; 'deaf'
//  ignores SIGTERM (and so does its sleep).
#define H_TERM                                                                 \
    "term=exec:read f; trap 'echo term > \"$f.term\"; exit 7' TERM; "          \
    "sleep 30 & echo $! > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"; wait"
#define H_DEAF                                                                 \
    "deaf=exec:read f; trap '' TERM; "                                         \
    "sleep 30 & echo $! > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"; wait"
//  Holds a 128 MiB string in awk, a grandchild of the node's child
#define H_HOG                                                                  \
    "hog=exec:awk 'BEGIN { s = \"x\"; for (i = 0; i < 27; i++) s = s s; "      \
    "system(\"sleep 30\"); print length(s) }'"
//  Burns CPU time in the shell
#define H_BURN                                                                 \
    "burn=exec:i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo $i"

//  The limit of --max-memory-per-child in the tests, in kB: above what a
//  child needs (also under ASan), well below what hog and alloc take
#define H_MEMORY_LIMIT    100000
#define H_MEMORY_LIMIT_KB "100000"

static bool
s_file_exists (const char *path)
{
    return access (path, F_OK) == 0;
}

Test (worker, soft_time_limit_sends_sigterm_to_the_group, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", "--handler", H_TERM, NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    pid_t before;
    H_EXPECT (h, 5000, s_children_of (h->pid, &before, 1) == 1, "no child");
    char path[128], marker[160], payload[160];
    snprintf (path, sizeof path, "%s/pid", h->tmp);
    snprintf (marker, sizeof marker, "%s.term", path);
    snprintf (payload, sizeof payload, "%s\n", path);
    uint64_t soft = 300 * (uint64_t)s_slow ();
    h_dispatch_limits (h, 70, "term", payload, strlen (payload), 0, soft);
    H_EXPECT (h, 5000, s_read_pid (path) > 0, "the task did not start");
    pid_t sleeper = s_read_pid (path);
    //  Well before the default grace of 5 s: the handler left on SIGTERM
    H_EXPECT (h, 3000, h_fail (h, 70), "no FAIL after the soft limit");
    h_outcome_t *fail = h_fail (h, 70);
    cr_assert_eq (fail->code, DROVER_ETIMELIMIT, "code %d: %s", fail->code,
                  fail->reason);
    cr_assert (s_file_exists (marker), "the handler did not see SIGTERM");
    cr_assert (fail->reason && strstr (fail->reason, "soft time limit of"),
               "reason: %s", fail->reason);
    cr_assert_eq (fail->exit_status, 7, "exit status %d", fail->exit_status);
    cr_assert (fail->elapsed_us >= soft * 1000 && fail->elapsed_us < 4000000,
               "elapsed %" PRIu64, fail->elapsed_us);
    //  The background sleep got SIGTERM too; the child is replaced
    H_EXPECT (h, 5000, s_process_gone (sleeper), "the grandchild survived");
    pid_t after = before;
    H_WAIT (h, 5000, s_children_of (h->pid, &after, 1) == 1 && after != before);
    cr_assert_neq (after, before, "the child was not replaced");
    h_dispatch_text (h, 71, "echo", "next");
    H_EXPECT (h, 5000, h_result (h, 71), "no child after the soft limit");
    h_destroy (&h);
}

Test (worker, hard_limit_kills_a_group_that_ignores_sigterm, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j",   "2", "--kill-grace-ms", "400", "--handler",
                           H_DEAF, NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 2);
    //  Task 72: a soft limit only, so SIGKILL comes after the grace period;
    //  task 73: a soft and a hard limit
    char path[2][128], payload[2][160];
    for (int i = 0; i < 2; i++) {
        snprintf (path[i], sizeof path[i], "%s/pid%d", h->tmp, i);
        snprintf (payload[i], sizeof payload[i], "%s\n", path[i]);
    }
    uint64_t soft = 200 * (uint64_t)s_slow ();
    uint64_t grace = 400; //  not stretched: --kill-grace-ms is fixed
    uint64_t hard = 700 * (uint64_t)s_slow ();
    h_dispatch_limits (h, 72, "deaf", payload[0], strlen (payload[0]), 0, soft);
    h_dispatch_limits (h, 73, "deaf", payload[1], strlen (payload[1]), hard,
                       soft);
    H_EXPECT (h, 5000, s_read_pid (path[0]) > 0 && s_read_pid (path[1]) > 0,
              "the tasks did not start");
    pid_t sleepers[2] = {s_read_pid (path[0]), s_read_pid (path[1])};
    H_EXPECT (h, 5000, h_fail (h, 72) && h_fail (h, 73), "no FAILs");
    h_outcome_t *graced = h_fail (h, 72), *killed = h_fail (h, 73);
    cr_assert_eq (graced->code, DROVER_ETIMELIMIT, "code %d", graced->code);
    cr_assert_eq (killed->code, DROVER_ETIMELIMIT, "code %d", killed->code);
    cr_assert_eq (graced->signal, SIGKILL, "signal %d", graced->signal);
    cr_assert_eq (killed->signal, SIGKILL, "signal %d", killed->signal);
    cr_assert (graced->elapsed_us >= (soft + grace) * 1000,
               "killed after %" PRIu64 " us, before soft + grace",
               graced->elapsed_us);
    cr_assert (killed->elapsed_us >= hard * 1000,
               "killed after %" PRIu64 " us, before the hard limit",
               killed->elapsed_us);
    cr_assert (strstr (graced->reason, "grace period of 400 ms"), "reason: %s",
               graced->reason);
    cr_assert (strstr (killed->reason, "hard time limit of"), "reason: %s",
               killed->reason);
    //  The grandchildren that ignored SIGTERM died with their groups
    H_EXPECT (h, 5000,
              s_process_gone (sleepers[0]) && s_process_gone (sleepers[1]),
              "a grandchild survived the hard limit");
    h_dispatch_text (h, 74, "echo", "next");
    H_EXPECT (h, 5000, h_result (h, 74), "no child after the hard limit");
    h_destroy (&h);
}

Test (worker, memory_limit_kills_an_exec_group, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {
        "-j",  "1", "--max-memory-per-child", H_MEMORY_LIMIT_KB, "--handler",
        H_HOG, NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    pid_t before;
    H_EXPECT (h, 5000, s_children_of (h->pid, &before, 1) == 1, "no child");
    h_dispatch_text (h, 75, "hog", "");
    H_EXPECT (h, 10000, h_fail (h, 75), "no FAIL for the memory hog");
    h_outcome_t *fail = h_fail (h, 75);
    cr_assert_eq (fail->code, DROVER_EMEMLIMIT, "code %d: %s", fail->code,
                  fail->reason);
    cr_assert (fail->max_rss_kb > H_MEMORY_LIMIT, "max_rss_kb %" PRIu64,
               fail->max_rss_kb);
    cr_assert (strstr (fail->reason, "limit of " H_MEMORY_LIMIT_KB " kB"),
               "reason: %s", fail->reason);
    cr_assert (fail->elapsed_us < 5000000, "killed after %" PRIu64 " us",
               fail->elapsed_us);
    H_EXPECT (h, 5000, s_group_gone (before), "the process group survived");
    //  The node goes on serving with a new child
    h_dispatch_text (h, 76, "echo", "next");
    H_EXPECT (h, 5000, h_result (h, 76), "the node stopped serving");
    cr_assert_null (h_fail (h, 76));
    h_destroy (&h);
}

//  Starts worker_example with one child and the test memory limit.
static void
s_start_example (h_t *h)
{
    char example[PATH_MAX];
    s_build_path (example, sizeof example, "examples/worker_example");
    const char *argv[] = {example, h->broker_ep, "1", H_MEMORY_LIMIT_KB, NULL};
    h->pid = s_spawn (argv, NULL, -1, -1);
    h_join (h, 1000, 5, 1);
}

//  Runs the example's pid handler as task id; returns the child's pid.
static pid_t
s_example_pid (h_t *h, uint64_t id)
{
    h_dispatch_text (h, id, "pid", "");
    H_EXPECT (h, 5000, h_result (h, id), "no result");
    char text[32] = "";
    size_t size = zchunk_size (h_result (h, id)->payload);
    cr_assert (size > 0 && size < sizeof text);
    memcpy (text, zchunk_data (h_result (h, id)->payload), size);
    return (pid_t)atoi (text);
}

Test (worker, memory_limit_kills_an_in_process_handler, .timeout = 30)
{
    h_t *h = h_new ();
    s_start_example (h);
    pid_t first = s_example_pid (h, 77);
    cr_assert_eq (s_example_pid (h, 78), first, "replaced without cause");
    h_dispatch_text (h, 79, "alloc", "200 20000");
    H_EXPECT (h, 10000, h_fail (h, 79), "no FAIL for 200 MiB");
    h_outcome_t *fail = h_fail (h, 79);
    cr_assert_eq (fail->code, DROVER_EMEMLIMIT, "code %d: %s", fail->code,
                  fail->reason);
    cr_assert (fail->max_rss_kb > H_MEMORY_LIMIT, "max_rss_kb %" PRIu64,
               fail->max_rss_kb);
    cr_assert (strstr (fail->reason, "--max-memory-per-child"), "reason: %s",
               fail->reason);
    H_EXPECT (h, 5000, s_process_gone (first), "the child survived");
    pid_t second = s_example_pid (h, 80);
    cr_assert_neq (second, first, "the child was not replaced");
    //  Quick tasks under the limit run on the same child
    h_dispatch_text (h, 81, "alloc", "4 0");
    H_EXPECT (h, 5000, h_result (h, 81), "no result for 4 MiB");
    cr_assert_eq (s_example_pid (h, 82), second, "replaced without cause");
    h_destroy (&h);
}

Test (worker, child_that_passed_the_memory_limit_is_recycled, .timeout = 30)
{
    h_t *h = h_new ();
    s_start_example (h);
    //  A short peak may finish between two checks (then it succeeds) or
    //  not (then it fails with EMEMLIMIT); either way the child is
    //  replaced after it. A few tries, so the first case is likely seen.
    pid_t child = s_example_pid (h, 83);
    size_t fails = 0;
    for (uint64_t id = 200; id < 208; id += 2) {
        h_dispatch_text (h, id, "alloc", "110 0");
        H_EXPECT (h, 10000, h_result (h, id) || h_fail (h, id), "no outcome");
        if (h_fail (h, id)) {
            fails++;
            cr_assert_eq (h_fail (h, id)->code, DROVER_EMEMLIMIT, "code %d",
                          h_fail (h, id)->code);
        }
        else
            cr_assert (h_result (h, id)->max_rss_kb > H_MEMORY_LIMIT,
                       "max_rss_kb %" PRIu64, h_result (h, id)->max_rss_kb);
        pid_t next = s_example_pid (h, id + 1);
        cr_assert_neq (next, child, "the child was not recycled");
        H_EXPECT (h, 5000, s_process_gone (child), "the old child lives on");
        child = next;
    }
    cr_assert_eq (zhashx_size (h->fails), fails, "a recycling is no failure");
    h_destroy (&h);
}

Test (worker, outcomes_carry_cpu_time, .timeout = 30)
{
    h_t *h = h_new ();
    const char *extra[] = {"-j", "1", "--handler", H_BURN, NULL};
    h_start (h, extra);
    h_join (h, 1000, 5, 1);
    //  An exec command's CPU time is the child's, through wait4
    h_dispatch_text (h, 86, "burn", "");
    H_EXPECT (h, 20000, h_result (h, 86), "no result");
    h_outcome_t *burn = h_result (h, 86);
    cr_assert (burn->cpu_us >= 20000, "cpu_us %" PRIu64, burn->cpu_us);
    cr_assert (burn->cpu_us <= burn->elapsed_us + 20000,
               "cpu_us %" PRIu64 " > elapsed_us %" PRIu64, burn->cpu_us,
               burn->elapsed_us);
    //  A quick task takes little
    h_dispatch_text (h, 87, "echo", "quick");
    H_EXPECT (h, 5000, h_result (h, 87), "no result");
    cr_assert (h_result (h, 87)->cpu_us < 100000, "cpu_us %" PRIu64,
               h_result (h, 87)->cpu_us);
    //  Failures carry it too
    h_dispatch_text (h, 88, "bad", "");
    H_EXPECT (h, 5000, h_fail (h, 88), "no FAIL");
    cr_assert (h_fail (h, 88)->cpu_us <= h_fail (h, 88)->elapsed_us + 20000);
    h_destroy (&h);
}

Test (worker, in_process_cpu_time_survives_a_kill, .timeout = 30)
{
    h_t *h = h_new ();
    s_start_example (h);
    h_dispatch_text (h, 89, "spin", "300");
    H_EXPECT (h, 20000, h_result (h, 89), "no result");
    h_outcome_t *spin = h_result (h, 89);
    cr_assert (spin->cpu_us >= 300000, "cpu_us %" PRIu64, spin->cpu_us);
    cr_assert (spin->cpu_us <= spin->elapsed_us + 20000,
               "cpu_us %" PRIu64 " > elapsed_us %" PRIu64, spin->cpu_us,
               spin->elapsed_us);
    //  An in-process handler dies of the soft limit's SIGTERM
    h_dispatch_limits (h, 91, "spin", "60000", 5, 0, 300 * (uint64_t)s_slow ());
    H_EXPECT (h, 10000, h_fail (h, 91), "no FAIL after the soft limit");
    cr_assert_eq (h_fail (h, 91)->code, DROVER_ETIMELIMIT);
    cr_assert_eq (h_fail (h, 91)->signal, SIGTERM, "signal %d",
                  h_fail (h, 91)->signal);
    cr_assert (strstr (h_fail (h, 91)->reason, "soft time limit"), "%s",
               h_fail (h, 91)->reason);
    //  Killed at its hard limit: the CPU time since its task began, from
    //  the dead child's rusage, without that of the task before
    uint64_t limit = 600 * (uint64_t)s_slow ();
    h_dispatch (h, 90, "spin", "60000", 5, limit);
    H_EXPECT (h, 10000, h_fail (h, 90), "no FAIL");
    h_outcome_t *fail = h_fail (h, 90);
    cr_assert_eq (fail->code, DROVER_ETIMELIMIT, "code %d", fail->code);
    cr_assert (fail->cpu_us >= 50000, "cpu_us %" PRIu64, fail->cpu_us);
    cr_assert (fail->cpu_us <= fail->elapsed_us + 20000,
               "cpu_us %" PRIu64 " > elapsed_us %" PRIu64, fail->cpu_us,
               fail->elapsed_us);
    h_destroy (&h);
}
