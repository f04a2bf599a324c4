/*  exec_handler.h - runs a shell command for one task, inside a child:
    the payload goes to its standard input, its standard output is the
    result, the tail of its standard error explains a failure.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_EXEC_HANDLER_H_INCLUDED
#define DROVER_EXEC_HANDLER_H_INCLUDED

#include "worker_private.h"

//  Internal to libdrover: not exported from the shared library
#pragma GCC visibility push(hidden)

//  Octets of standard error kept for the failure reason.
#define EXEC_STDERR_TAIL 2048

//  How the command ended.
typedef struct {
    int32_t signal;      //  the signal that killed it, or 0
    int32_t exit_status; //  its exit status, or 0
    uint64_t max_rss_kb; //  its peak resident memory
} exec_status_t;

//  Runs command through /bin/sh -c with input on its standard input and
//  collects its standard output in output. Returns 0 when it exited with
//  status 0; DROVER_EFAILED for another exit status and DROVER_ECRASHED
//  for death by a signal (output->message then holds the tail of standard
//  error); DROVER_ETOOBIG when the output passed output->limit, and
//  DROVER_ENOMEM when it could not be held; DROVER_ESYSTEM when it could
//  not be started. Blocks until the command
//  ends and closes its output; the node's time limit ends a command that
//  never does.
int exec_handler_run (const char *command, const void *input, size_t size,
                      drover_output_t *output, exec_status_t *status);

#pragma GCC visibility pop

#endif
