/*  cmd_worker.c - drover worker: run a worker node.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "commands.h"
#include "options.h"

#include "drover_worker.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  Registers one --handler NAME=KIND:ARG; returns 0 or CLI_USAGE.
static int
s_add_handler (const cli_command_t *command, drover_worker_t *worker,
               const char *spec)
{
    const char *equals = strchr (spec, '=');
    const char *colon = equals ? strchr (equals + 1, ':') : NULL;
    if (!equals || equals == spec || !colon)
        return cli_usage_error (command,
                                "--handler '%s' must be NAME=exec:COMMAND or "
                                "NAME=builtin:BUILTIN",
                                spec);
    char *name = strndup (spec, (size_t)(equals - spec));
    char *kind = strndup (equals + 1, (size_t)(colon - equals - 1));
    const char *argument = colon + 1;
    int rc = 0;
    if (!name || !kind)
        rc = cli_usage_error (command, "out of memory");
    else if (strcmp (kind, "exec") && strcmp (kind, "builtin"))
        rc = cli_usage_error (command,
                              "--handler '%s': '%s' is not a kind of handler; "
                              "use exec:COMMAND or builtin:BUILTIN",
                              spec, kind);
    else if (!*argument)
        rc = cli_usage_error (command, "--handler '%s': %s:%s is empty", spec,
                              kind,
                              !strcmp (kind, "exec") ? "COMMAND" : "BUILTIN");
    else {
        int added = !strcmp (kind, "exec")
                        ? drover_worker_add_exec (worker, name, argument)
                        : drover_worker_add_builtin (worker, name, argument);
        if (added == DROVER_EHANDLER)
            rc = cli_usage_error (command,
                                  "--handler '%s': no built-in '%s'; the "
                                  "built-ins are echo, sleep, fail, crash, "
                                  "sha256",
                                  spec, argument);
        else if (added)
            rc = cli_usage_error (
                command,
                "--handler '%s': the name must be 1 to 255 printable "
                "characters without spaces, used once",
                spec);
    }
    free (name);
    free (kind);
    return rc;
}

//  The repeatable options. Their items point into argv or into copies of
//  the environment that live as long as the process: static, so that leak
//  checkers see them as reachable.
static cli_list_t s_handlers;
static cli_list_t s_queues;

int
drover_cmd_worker (int argc, char **argv)
{
    const char *endpoint = NULL;
    long jobs = 1;
    cli_list_t *handlers = &s_handlers;
    bool no_builtins = false;
    long max_tasks = 0;
    long lookahead = CLI_AUTO;
    const char *name = NULL;
    cli_list_t *queues = &s_queues;
    long drain_timeout = 60000;
    long kill_grace = 5000;
    long max_memory = 0;
    const char *child_sched = "batch";
    bool verbose = false;

    char jobs_default[24];
    long cpus = sysconf (_SC_NPROCESSORS_ONLN);
    snprintf (jobs_default, sizeof jobs_default, "%ld",
              cpus < 1 ? 1
              : cpus > DROVER_WORKER_MAX_CHILDREN
                  ? (long)DROVER_WORKER_MAX_CHILDREN
                  : cpus);

    cli_option_t options[] = {
        {"connect", 'c', CLI_STRING, "DROVER_CONNECT", "tcp://127.0.0.1:5555",
         0, 0, "EP", "the broker's endpoint", &endpoint},
        {"jobs", 'j', CLI_INT, "DROVER_JOBS", jobs_default, 1,
         DROVER_WORKER_MAX_CHILDREN, "N",
         "child processes running tasks (default: one per CPU)", &jobs},
        {"handler", 0, CLI_LIST, "DROVER_HANDLERS", NULL, 0, 0, "NAME=exec:CMD",
         "add a handler running CMD with /bin/sh -c per task, payload on "
         "stdin, result from stdout; or NAME=builtin:BUILTIN (repeatable; "
         "env: one per line)",
         handlers},
        {"no-builtins", 0, CLI_FLAG, "DROVER_NO_BUILTINS", NULL, 0, 0, NULL,
         "do not offer the built-in handlers echo, sleep, fail, crash, sha256",
         &no_builtins},
        {"max-tasks-per-child", 0, CLI_INT, "DROVER_MAX_TASKS_PER_CHILD", "0",
         0, 1000000000, "K", "replace each child after K tasks (0: never)",
         &max_tasks},
        {"lookahead", 0, CLI_COUNT, "DROVER_LOOKAHEAD", "auto", 0,
         DROVER_WORKER_MAX_LOOKAHEAD, "N|auto",
         "tasks to hold beyond one per child; auto: about 2 ms of work "
         "per child (1 to 256) while tasks take under 100 ms on average, "
         "else none",
         &lookahead},
        {"name", 0, CLI_STRING, "DROVER_NAME", NULL, 0, 0, "NAME",
         "the node's name in the broker's logs (default: host:pid)", &name},
        {"queue", 0, CLI_LIST, "DROVER_QUEUES", NULL, 0, 0, "QUEUE",
         "serve this queue (repeatable; default: the queue 'default')", queues},
        {"drain-timeout", 0, CLI_INT, "DROVER_DRAIN_TIMEOUT", "60000", 0,
         86400000, "MS",
         "on SIGTERM, wait this long for leased tasks, then kill them (0: "
         "for ever)",
         &drain_timeout},
        {"kill-grace-ms", 0, CLI_INT, "DROVER_KILL_GRACE_MS", "5000", 0,
         86400000, "MS",
         "a task past its soft time limit (SIGTERM) and without a hard one "
         "is killed (SIGKILL) this much later",
         &kill_grace},
        {"max-memory-per-child", 0, CLI_INT, "DROVER_MAX_MEMORY_PER_CHILD", "0",
         0, 2147483647, "KB",
         "kill a task whose child and commands use more resident memory "
         "than KB kB (checked every 100 ms; DROVER_EMEMLIMIT), and replace "
         "a child that passed it (0: no limit)",
         &max_memory},
        {"child-sched", 0, CLI_STRING, "DROVER_CHILD_SCHED", "batch", 0, 0,
         "batch|inherit",
         "the kernel policy of children and their commands: batch "
         "(SCHED_BATCH when the node runs under the normal policy: a child "
         "that wakes never preempts the supervisor) or inherit (the "
         "node's)",
         &child_sched},
        {"verbose", 'v', CLI_FLAG, "DROVER_VERBOSE", NULL, 0, 0, NULL,
         "log every message sent and received", &verbose},
    };
    cli_command_t command = {
        "worker",
        "drover worker [--connect EP] [-j N] [--handler NAME=exec:CMD ...] "
        "[OPTIONS]",
        "Runs a worker node: a supervisor that pre-forks N children, asks the "
        "broker\nfor tasks, runs each in a child and sends the outcomes on. "
        "It offers the\nbuilt-in handlers and those given with --handler; "
        "clients name a handler,\nnever a command. SIGTERM or SIGINT drains "
        "it: leased tasks finish, then it\nleaves; a second signal stops it "
        "at once.",
        options, sizeof options / sizeof options[0]};

    int first_arg;
    int rc = cli_parse (&command, argc, argv, &first_arg);
    if (rc == CLI_HELP)
        return 0;
    if (rc == 0 && first_arg < argc)
        rc = cli_usage_error (&command, "unexpected argument '%s'",
                              argv[first_arg]);
    drover_worker_t *worker = NULL;
    if (rc == 0) {
        worker = drover_worker_new ();
        if (!worker) {
            fprintf (stderr, "drover worker: out of memory\n");
            rc = 1;
        }
    }
    if (rc == 0 && drover_worker_set_endpoint (worker, endpoint))
        rc = cli_usage_error (&command,
                              "--connect '%s' is not an endpoint like "
                              "tcp://127.0.0.1:5555",
                              endpoint);
    if (rc == 0 && name && drover_worker_set_name (worker, name))
        rc = cli_usage_error (&command,
                              "--name '%s' must be 1 to 255 printable "
                              "characters without spaces",
                              name);
    for (size_t i = 0; rc == 0 && i < queues->count; i++)
        if (drover_worker_add_queue (worker, queues->items[i]))
            rc = cli_usage_error (&command,
                                  "--queue '%s' must be 1 to 255 printable "
                                  "characters without spaces",
                                  queues->items[i]);
    bool batch_children = child_sched && !strcmp (child_sched, "batch");
    if (rc == 0 && !batch_children && strcmp (child_sched, "inherit"))
        rc = cli_usage_error (&command,
                              "--child-sched '%s' must be batch or inherit",
                              child_sched);
    for (size_t i = 0; rc == 0 && i < handlers->count; i++)
        rc = s_add_handler (&command, worker, handlers->items[i]);
    if (rc == 0 && !no_builtins)
        drover_worker_add_builtins (worker);
    if (rc == 0 && no_builtins && handlers->count == 0)
        rc = cli_usage_error (&command,
                              "--no-builtins leaves no handler; add one "
                              "with --handler NAME=exec:CMD");
    if (rc == 0) {
        drover_worker_set_children (worker, (unsigned)jobs);
        drover_worker_set_lookahead (worker, lookahead == CLI_AUTO
                                                 ? DROVER_WORKER_LOOKAHEAD_AUTO
                                                 : (unsigned)lookahead);
        drover_worker_set_max_tasks_per_child (worker, (unsigned)max_tasks);
        drover_worker_set_drain_timeout (worker, (unsigned)drain_timeout);
        drover_worker_set_kill_grace (worker, (unsigned)kill_grace);
        drover_worker_set_max_memory_per_child (worker,
                                                (unsigned long long)max_memory);
        drover_worker_set_batch_children (worker, batch_children);
        drover_worker_set_verbose (worker, verbose);
        int run = drover_worker_run (worker);
        if (run == DROVER_EINVAL) {
            fprintf (stderr,
                     "drover worker: cannot connect to '%s'; check "
                     "--connect\n",
                     endpoint);
            rc = 2;
        }
        else if (run == DROVER_ESHUTDOWN) {
            fprintf (stderr, "drover worker: stopped before its leased tasks "
                             "finished (a second signal, or "
                             "--drain-timeout)\n");
            rc = 1;
        }
        else if (run) {
            fprintf (stderr, "drover worker: %s\n", drover_strerror (run));
            rc = 1;
        }
    }
    drover_worker_destroy (&worker);
    return rc;
}
