/*  procs.h - real processes for the end-to-end and fault suites: started
    with sh -c in their own process group, dying with the test
    (PR_SET_PDEATHSIG), killed in teardown, in a scratch directory per test.
*/
#ifndef DROVER_TEST_PROCS_H_INCLUDED
#define DROVER_TEST_PROCS_H_INCLUDED

#include <stddef.h>
#include <sys/types.h>

/*  The drover binary under test ($DROVER, set by tests/meson.build). */
const char *procs_drover (void);

/*  Makes the test's scratch directory /tmp/drover-NAME-XXXXXX. */
void procs_setup (const char *name);

/*  Kills every process and process group still tracked and removes the
    scratch directory (kept, and named on stderr, when DROVER_KEEP_LOGS is
    set in the environment). */
void procs_teardown (void);

/*  The scratch directory. */
const char *procs_dir (void);

/*  Path of a file in the scratch directory. Caller frees. */
char *procs_path (const char *name);

/*  Starts sh -c COMMAND in the background, in its own process group. */
pid_t procs_spawn (const char *format, ...)
    __attribute__ ((format (printf, 1, 2)));

/*  Waits for pid up to timeout_ms; returns its exit status, 128 + signal,
    or -1 on timeout (then its group is killed). */
int procs_wait (pid_t pid, int timeout_ms);

/*  Runs sh -c COMMAND in the foreground; returns as procs_wait. */
int procs_run (int timeout_ms, const char *format, ...)
    __attribute__ ((format (printf, 2, 3)));

/*  Kills a started process with SIGKILL and reaps it. */
void procs_kill_9 (pid_t pid);

/*  Kills this process group too in teardown. */
void procs_track_group (pid_t pgid);

/*  A loopback port nobody listens on now. */
int procs_free_port (void);

/*  The contents of a file ("" if it does not exist), its size in *size if
    size is not NULL. Caller frees. */
char *procs_read (const char *path, size_t *size);

/*  Writes count lines to path: format (with one %zu) of 0 to count - 1. */
void procs_write_lines (const char *path, size_t count, const char *format);

/*  Waits (20 s at most, else fails the test) until the broker at endpoint
    has no task queued or running, by `drover stats`. */
void procs_wait_idle (const char *endpoint);

#endif
