/*  procs.c - real processes for the end-to-end and fault suites. */
#include "procs.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <czmq.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#define MAX_SPAWNED 32
static pid_t s_spawned[MAX_SPAWNED]; //  processes started, not yet reaped
static size_t s_spawned_count;
static pid_t s_groups[MAX_SPAWNED]; //  more process groups to kill
static size_t s_group_count;
static char s_dir[64]; //  the test's scratch directory

const char *
procs_drover (void)
{
    const char *path = getenv ("DROVER");
    cr_assert_not_null (path, "run through meson test: $DROVER is not set");
    return path;
}

void
procs_setup (const char *name)
{
    snprintf (s_dir, sizeof s_dir, "/tmp/drover-%s-XXXXXX", name);
    cr_assert_not_null (mkdtemp (s_dir));
    s_spawned_count = 0;
    s_group_count = 0;
    zsys_handler_set (NULL);
}

void
procs_teardown (void)
{
    for (size_t i = 0; i < s_spawned_count; i++) {
        kill (-s_spawned[i], SIGKILL);
        waitpid (s_spawned[i], NULL, 0);
    }
    s_spawned_count = 0;
    for (size_t i = 0; i < s_group_count; i++)
        kill (-s_groups[i], SIGKILL);
    s_group_count = 0;
    if (getenv ("DROVER_KEEP_LOGS")) {
        fprintf (stderr, "logs kept in %s\n", s_dir);
        return;
    }
    char *command = zsys_sprintf ("rm -rf %s", s_dir);
    if (system (command) != 0)
        fprintf (stderr, "cannot remove %s\n", s_dir);
    free (command);
}

const char *
procs_dir (void)
{
    return s_dir;
}

char *
procs_path (const char *name)
{
    return zsys_sprintf ("%s/%s", s_dir, name);
}

static pid_t
s_spawn (char *command)
{
    pid_t pid = fork ();
    cr_assert (pid >= 0);
    if (pid == 0) {
        prctl (PR_SET_PDEATHSIG, SIGKILL);
        setpgid (0, 0);
        execl ("/bin/sh", "sh", "-c", command, (char *)NULL);
        _exit (127);
    }
    setpgid (pid, pid);
    free (command);
    cr_assert (s_spawned_count < MAX_SPAWNED);
    s_spawned[s_spawned_count++] = pid;
    return pid;
}

pid_t
procs_spawn (const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *command = zsys_vprintf (format, args);
    va_end (args);
    return s_spawn (command);
}

static void
s_forget (pid_t pid)
{
    for (size_t i = 0; i < s_spawned_count; i++)
        if (s_spawned[i] == pid)
            s_spawned[i] = s_spawned[--s_spawned_count];
}

int
procs_wait (pid_t pid, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    int delay_us = 1000;
    while (true) {
        int status;
        pid_t done = waitpid (pid, &status, WNOHANG);
        if (done == pid) {
            s_forget (pid);
            return WIFEXITED (status) ? WEXITSTATUS (status)
                                      : 128 + WTERMSIG (status);
        }
        if (zclock_mono () > deadline) {
            kill (-pid, SIGKILL);
            waitpid (pid, &status, 0);
            s_forget (pid);
            return -1;
        }
        usleep (delay_us); //  polling a child's exit, with a deadline
        delay_us = delay_us < 20000 ? delay_us * 2 : delay_us;
    }
}

int
procs_run (int timeout_ms, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *command = zsys_vprintf (format, args);
    va_end (args);
    return procs_wait (s_spawn (command), timeout_ms);
}

void
procs_kill_9 (pid_t pid)
{
    kill (pid, SIGKILL);
    waitpid (pid, NULL, 0);
    s_forget (pid);
}

void
procs_track_group (pid_t pgid)
{
    if (s_group_count < MAX_SPAWNED)
        s_groups[s_group_count++] = pgid;
}

int
procs_free_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    cr_assert_eq (bind (fd, (struct sockaddr *)&address, sizeof address), 0);
    socklen_t size = sizeof address;
    getsockname (fd, (struct sockaddr *)&address, &size);
    close (fd);
    return ntohs (address.sin_port);
}

char *
procs_read (const char *path, size_t *size)
{
    FILE *file = fopen (path, "rb");
    if (size)
        *size = 0;
    if (!file)
        return strdup ("");
    fseek (file, 0, SEEK_END);
    long length = ftell (file);
    fseek (file, 0, SEEK_SET);
    char *data = (char *)malloc ((size_t)length + 1);
    cr_assert_eq (fread (data, 1, (size_t)length, file), (size_t)length);
    data[length] = 0;
    fclose (file);
    if (size)
        *size = (size_t)length;
    return data;
}

void
procs_write_lines (const char *path, size_t count, const char *format)
{
    FILE *file = fopen (path, "w");
    cr_assert_not_null (file);
    for (size_t i = 0; i < count; i++) {
        fprintf (file, format, i);
        fputc ('\n', file);
    }
    fclose (file);
}

void
procs_wait_idle (const char *endpoint)
{
    int64_t deadline = zclock_mono () + 20000;
    while (zclock_mono () < deadline) {
        int busy = procs_run (5000,
                              "%s stats --connect %s | grep -Eq "
                              "'(queued|leased) [1-9]'",
                              procs_drover (), endpoint);
        if (busy == 1)
            return;     //  grep found nothing busy
        usleep (50000); //  polling the broker, with a deadline
    }
    cr_assert_fail ("the broker stayed busy");
}
