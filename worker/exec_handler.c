/*  exec_handler.c - the exec:CMD handler.

    The child forks /bin/sh -c CMD with three pipes and moves data with
    poll(), so a command that writes a lot before it reads all its input
    cannot deadlock against us. The command stays in the child's process
    group: the node's time limit kills both at once.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "exec_handler.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

//  The last EXEC_STDERR_TAIL octets of a stream.
typedef struct {
    char data[EXEC_STDERR_TAIL]; //  the octets, oldest first
    size_t size;                 //  octets in data
    bool cut;                    //  older octets were dropped
} s_tail_t;

static void
s_tail_add (s_tail_t *self, const char *data, size_t size)
{
    if (size >= EXEC_STDERR_TAIL) {
        memcpy (self->data, data + size - EXEC_STDERR_TAIL, EXEC_STDERR_TAIL);
        self->cut = self->cut || self->size > 0 || size > EXEC_STDERR_TAIL;
        self->size = EXEC_STDERR_TAIL;
        return;
    }
    if (self->size + size > EXEC_STDERR_TAIL) {
        size_t drop = self->size + size - EXEC_STDERR_TAIL;
        memmove (self->data, self->data + drop, self->size - drop);
        self->size -= drop;
        self->cut = true;
    }
    memcpy (self->data + self->size, data, size);
    self->size += size;
}

//  Sets the failure message: the tail of standard error without NUL
//  octets and trailing blanks, or fallback when it is empty.
static void
s_set_reason (drover_output_t *output, s_tail_t *tail, const char *fallback)
{
    size_t size = tail->size;
    while (size > 0
           && (tail->data[size - 1] == '\n' || tail->data[size - 1] == '\r'
               || tail->data[size - 1] == ' '))
        size--;
    if (size == 0) {
        drover_output_fail (output, "%s", fallback);
        return;
    }
    char text[EXEC_STDERR_TAIL + 1];
    for (size_t i = 0; i < size; i++)
        text[i] = tail->data[i] ? tail->data[i] : '?';
    text[size] = 0;
    drover_output_fail (output, "%s%s", tail->cut ? "..." : "", text);
}

static void
s_close (int *fd)
{
    if (*fd >= 0)
        close (*fd);
    *fd = -1;
}

//  In the command's process: wire the pipes to 0, 1, 2 and exec the shell.
static void __attribute__ ((noreturn))
s_command_main (const char *command, pid_t parent, int in, int out, int err)
{
    //  If the child dies, the command dies with it
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (getppid () != parent)
        _exit (127);
    if (dup2 (in, 0) < 0 || dup2 (out, 1) < 0 || dup2 (err, 2) < 0)
        _exit (127);
    //  The child ignores SIGTERM while we run; the soft time limit's
    //  SIGTERM is for us
    signal (SIGPIPE, SIG_DFL);
    signal (SIGTERM, SIG_DFL);
    close_range (3, ~0U, 0);
    execl ("/bin/sh", "sh", "-c", command, (char *)NULL);
    static const char message[] = "drover: cannot run /bin/sh\n";
    if (write (2, message, sizeof message - 1) < 0)
        _exit (127);
    _exit (127);
}

//  Reads what fd has into output, or into tail when output is NULL;
//  closes fd at end of file.
static void
s_drain (int *fd, char *buffer, size_t size, drover_output_t *output,
         s_tail_t *tail)
{
    ssize_t got = read (*fd, buffer, size);
    if (got > 0) {
        if (output) {
            if (!output->error)
                drover_output_write (output, buffer, (size_t)got);
        }
        else
            s_tail_add (tail, buffer, (size_t)got);
    }
    else if (got == 0 || (errno != EAGAIN && errno != EINTR))
        s_close (fd);
}

int
exec_handler_run (const char *command, const void *input, size_t size,
                  drover_output_t *output, exec_status_t *status)
{
    memset (status, 0, sizeof *status);
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC)
        || pipe2 (err, O_CLOEXEC)) {
        drover_output_fail (output, "cannot create pipes: %s",
                            strerror (errno));
        for (int i = 0; i < 2; i++) {
            s_close (&in[i]);
            s_close (&out[i]);
            s_close (&err[i]);
        }
        return DROVER_ESYSTEM;
    }
    //  A command that exits without reading its input must not kill us
    struct sigaction ignore = {.sa_handler = SIG_IGN}, saved;
    sigemptyset (&ignore.sa_mask);
    sigaction (SIGPIPE, &ignore, &saved);

    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid == 0)
        s_command_main (command, parent, in[0], out[1], err[1]);
    s_close (&in[0]);
    s_close (&out[1]);
    s_close (&err[1]);
    if (pid < 0) {
        drover_output_fail (output, "cannot fork: %s", strerror (errno));
        s_close (&in[1]);
        s_close (&out[0]);
        s_close (&err[0]);
        sigaction (SIGPIPE, &saved, NULL);
        return DROVER_ESYSTEM;
    }
    fcntl (in[1], F_SETFL, O_NONBLOCK);
    fcntl (out[0], F_SETFL, O_NONBLOCK);
    fcntl (err[0], F_SETFL, O_NONBLOCK);
    if (size == 0)
        s_close (&in[1]);

    const char *input_left = (const char *)input;
    size_t input_size = size;
    s_tail_t *tail = (s_tail_t *)calloc (1, sizeof *tail);
    char *buffer = (char *)malloc (65536);
    if (!tail || !buffer) {
        //  Let the command run without us reading: it ends at EOF
        s_close (&in[1]);
        s_close (&out[0]);
        s_close (&err[0]);
    }
    while (out[0] >= 0 || err[0] >= 0) {
        struct pollfd items[3];
        int count = 0, at_in = -1, at_out = -1, at_err = -1;
        if (in[1] >= 0) {
            at_in = count;
            items[count++] = (struct pollfd){in[1], POLLOUT, 0};
        }
        if (out[0] >= 0) {
            at_out = count;
            items[count++] = (struct pollfd){out[0], POLLIN, 0};
        }
        if (err[0] >= 0) {
            at_err = count;
            items[count++] = (struct pollfd){err[0], POLLIN, 0};
        }
        if (poll (items, (nfds_t)count, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (at_in >= 0 && items[at_in].revents) {
            size_t chunk = input_size < 65536 ? input_size : 65536;
            ssize_t put = write (in[1], input_left, chunk);
            if (put > 0) {
                input_left += put;
                input_size -= (size_t)put;
                if (input_size == 0)
                    s_close (&in[1]);
            }
            else if (put < 0 && errno != EAGAIN && errno != EINTR)
                s_close (&in[1]); //  EPIPE: it stopped reading
        }
        if (at_out >= 0 && items[at_out].revents)
            s_drain (&out[0], buffer, 65536, output, NULL);
        if (at_err >= 0 && items[at_err].revents)
            s_drain (&err[0], buffer, 65536, NULL, tail);
    }
    s_close (&in[1]);
    s_close (&out[0]);
    s_close (&err[0]);
    sigaction (SIGPIPE, &saved, NULL);

    int wstatus = 0;
    struct rusage usage;
    memset (&usage, 0, sizeof usage);
    while (wait4 (pid, &wstatus, 0, &usage) < 0 && errno == EINTR)
        ;
    status->max_rss_kb = usage.ru_maxrss > 0 ? (uint64_t)usage.ru_maxrss : 0;
    int rc = 0;
    char fallback[96];
    if (WIFEXITED (wstatus) && WEXITSTATUS (wstatus) != 0) {
        status->exit_status = WEXITSTATUS (wstatus);
        snprintf (fallback, sizeof fallback, "command exited with status %d",
                  status->exit_status);
        rc = DROVER_EFAILED;
    }
    else if (WIFSIGNALED (wstatus)) {
        status->signal = WTERMSIG (wstatus);
        snprintf (fallback, sizeof fallback, "command killed by signal %d (%s)",
                  status->signal, strsignal (status->signal));
        rc = DROVER_ECRASHED;
    }
    if (rc && tail)
        s_set_reason (output, tail, fallback);
    else if (rc)
        drover_output_fail (output, "%s", fallback);
    else if (!tail || !buffer) {
        drover_output_fail (output, "out of memory");
        rc = DROVER_ESYSTEM;
    }
    else if (output->error)
        rc = output->error;
    free (tail);
    free (buffer);
    return rc;
}
