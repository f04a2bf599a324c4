/*  interrupt.c - signals and stdio for the client-side commands.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "interrupt.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>

volatile sig_atomic_t cli_interrupted;

static void
s_on_signal (int signal)
{
    cli_interrupted = signal;
}

//  CZMQ installs its own SIGINT/SIGTERM handlers when it starts: start it
//  first, then put ours in place (without SA_RESTART, so waits return).
void
cli_catch_signals (void)
{
    //  A closed stdin, stdout or stderr would be the first fd ZeroMQ
    //  opens: we would read inputs from, or write results into, its
    //  sockets. Put /dev/null there, opened so that using it fails as the
    //  closed fd would have (EBADF).
    for (int fd = STDIN_FILENO; fd <= STDERR_FILENO; fd++)
        if (fcntl (fd, F_GETFD) == -1 && errno == EBADF) {
            int opened =
                open ("/dev/null", fd == STDIN_FILENO ? O_WRONLY : O_RDONLY);
            assert (opened == -1 || opened == fd); //  the lowest free fd
        }
    zsys_init ();
    zsys_set_logstream (stderr);
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_on_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGHUP, &action, NULL);
    signal (SIGPIPE, SIG_IGN); //  a closed stdout is a write error
}
