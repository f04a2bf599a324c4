/*  commands.h - the drover subcommands. Each parses its options with
    options.h, starts the modules it needs, waits, and tears down.
    Each returns the process exit status (0 ok, 1 failure, 2 usage).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CLI_COMMANDS_H_INCLUDED
#define DROVER_CLI_COMMANDS_H_INCLUDED

int drover_cmd_broker (int argc, char **argv); //  cmd_broker.c
int drover_cmd_sink (int argc, char **argv);   //  cmd_broker.c
int drover_cmd_worker (int argc, char **argv); //  cmd_worker.c
int drover_cmd_map (int argc, char **argv);    //  cmd_client.c
int drover_cmd_submit (int argc, char **argv); //  cmd_client.c
int drover_cmd_wait (int argc, char **argv);   //  cmd_client.c
int drover_cmd_result (int argc, char **argv); //  cmd_client.c
int drover_cmd_status (int argc, char **argv); //  cmd_client.c
int drover_cmd_cancel (int argc, char **argv); //  cmd_client.c
int drover_cmd_stats (int argc, char **argv);  //  cmd_client.c
int drover_cmd_dead (int argc, char **argv);   //  cmd_client.c
int drover_cmd_bench (int argc, char **argv);  //  cmd_bench.c

#endif
