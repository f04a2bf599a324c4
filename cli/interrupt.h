/*  interrupt.h - how the client-side commands (map, submit, bench...) start:
    stdio made safe for ZeroMQ, CZMQ logging to stderr, and SIGINT, SIGTERM
    and SIGHUP caught so that waits return and the command tears down.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CLI_INTERRUPT_H_INCLUDED
#define DROVER_CLI_INTERRUPT_H_INCLUDED

#include <signal.h>

//  The signal that interrupted the command, or 0.
extern volatile sig_atomic_t cli_interrupted;

//  Puts /dev/null in place of a closed stdin, stdout or stderr, starts
//  CZMQ with its log on stderr (stdout carries results), then catches
//  SIGINT, SIGTERM and SIGHUP (without SA_RESTART) and ignores SIGPIPE.
void cli_catch_signals (void);

#endif
