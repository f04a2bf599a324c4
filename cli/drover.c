/*  drover.c - the drover executable: git-style subcommands.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "commands.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;                   //  subcommand
    int (*run) (int argc, char **argv); //  its main
    const char *help;                   //  one line
} s_command_t;

static const s_command_t s_commands[] = {
    {"broker", drover_cmd_broker,
     "run a broker (queues, dispatch; embeds a sink)"},
    {"sink", drover_cmd_sink, "run a stand-alone sink (stores results)"},
    {"worker", drover_cmd_worker, "run a worker node with N child processes"},
    {"map", drover_cmd_map, "run a handler over every input line"},
    {"submit", drover_cmd_submit, "submit one task and print its id"},
    {"wait", drover_cmd_wait, "wait for tasks to finish"},
    {"result", drover_cmd_result, "print the results of finished tasks"},
    {"status", drover_cmd_status, "print the state of tasks"},
    {"cancel", drover_cmd_cancel, "cancel tasks"},
    {"stats", drover_cmd_stats, "print queues, nodes and counters"},
    {"dead", drover_cmd_dead, "list dead letters (failed tasks) or retry them"},
    {"bench", drover_cmd_bench,
     "measure throughput, latency and dispatch (like redis-benchmark)"},
};

static void
s_usage (FILE *stream)
{
    fprintf (stream, "usage: drover COMMAND [OPTIONS] [ARGS]\n\n"
                     "Drover is a distributed task queue.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        fprintf (stream, "  %-8s %s\n", s_commands[i].name, s_commands[i].help);
    fprintf (stream,
             "\n'drover COMMAND --help' tells more about one command.\n");
}

int
main (int argc, char **argv)
{
    if (argc < 2) {
        fprintf (stderr, "drover: no command given; see 'drover --help'\n");
        return 2;
    }
    if (!strcmp (argv[1], "--help") || !strcmp (argv[1], "-h")
        || !strcmp (argv[1], "help")) {
        s_usage (stdout);
        return 0;
    }
    if (!strcmp (argv[1], "--version")) {
        printf ("drover %s\n", DROVER_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof s_commands / sizeof s_commands[0]; i++)
        if (!strcmp (argv[1], s_commands[i].name))
            return s_commands[i].run (argc - 1, argv + 1);
    fprintf (stderr, "drover: '%s' is not a command; see 'drover --help'\n",
             argv[1]);
    return 2;
}
