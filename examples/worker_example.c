/*  worker_example.c - a worker node with C handlers, built on libdrover.

    Usage: worker_example [ENDPOINT [CHILDREN [MAX_MEMORY_KB]]]
    (defaults: $DROVER_CONNECT or tcp://127.0.0.1:5555, 2 children, no
    memory limit)

    It offers these handlers: 'upper' returns its payload in capitals,
    'wordcount' returns the number of words in it; and, to try the node's
    limits, 'alloc' ("MIB MS": takes and touches MIB MiB, holds them MS
    milliseconds, frees them), 'spin' ("MS": burns MS milliseconds of CPU
    time) and 'pid' (returns the pid of the child that ran it). A client
    calls them by name, e.g. `drover submit upper 'hello world'`. SIGTERM
    or Ctrl-C drains the node and ends the program.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
//  nanosleep, clock_gettime: a program built on its own (cc -std=c11 ...)
//  asks for POSIX itself
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "drover_worker.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

//  Returns the payload in capitals.
static int
s_upper (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)arg;
    const unsigned char *text = (const unsigned char *)input;
    char buffer[4096];
    size_t used = 0;
    for (size_t i = 0; i < size; i++) {
        buffer[used++] = (char)toupper (text[i]);
        if (used == sizeof buffer || i + 1 == size) {
            int rc = drover_output_write (output, buffer, used);
            if (rc)
                return rc;
            used = 0;
        }
    }
    return 0;
}

//  Returns how many blank-separated words the payload has, in decimal.
static int
s_wordcount (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)arg;
    const unsigned char *text = (const unsigned char *)input;
    unsigned long long words = 0;
    int in_word = 0;
    for (size_t i = 0; i < size; i++) {
        if (text[i] == 0)
            return drover_output_fail (output,
                                       "wordcount: input is not text (a NUL "
                                       "octet at %zu)",
                                       i);
        int blank = isspace (text[i]);
        if (!blank && !in_word)
            words++;
        in_word = !blank;
    }
    char count[32];
    int length = snprintf (count, sizeof count, "%llu", words);
    return drover_output_write (output, count, (size_t)length);
}

//  Copies the payload into text, a buffer of room octets, with a NUL;
//  returns 0 when it does not fit.
static int
s_payload_text (const void *input, size_t size, char *text, size_t room)
{
    if (size >= room)
        return 0;
    memcpy (text, input, size);
    text[size] = 0;
    return 1;
}

//  "MIB MS": takes MIB MiB, writes every page, holds them MS milliseconds.
static int
s_alloc (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)arg;
    char text[64];
    unsigned long mib = 0, hold_ms = 0;
    if (!s_payload_text (input, size, text, sizeof text)
        || sscanf (text, "%lu %lu", &mib, &hold_ms) < 1 || mib > 65536
        || hold_ms > 3600000)
        return drover_output_fail (output, "alloc: expected 'MIB [MS]', "
                                           "MIB up to 65536");
    size_t bytes = (size_t)mib << 20;
    char *block = (char *)malloc (bytes ? bytes : 1);
    if (!block)
        return drover_output_fail (output, "alloc: no memory for %lu MiB", mib);
    for (size_t at = 0; at < bytes; at += 4096)
        block[at] = (char)at;
    struct timespec hold = {(time_t)(hold_ms / 1000),
                            (long)(hold_ms % 1000) * 1000000};
    while (nanosleep (&hold, &hold) && errno == EINTR)
        ;
    //  Read it back, so the writes cannot be left out
    unsigned long sum = 0;
    for (size_t at = 0; at < bytes; at += 4096)
        sum += (unsigned char)block[at];
    free (block);
    char reply[64];
    int length = snprintf (reply, sizeof reply, "%lu MiB %lu", mib, sum);
    return drover_output_write (output, reply, (size_t)length);
}

//  "MS": burns MS milliseconds of this process's CPU time.
static int
s_spin (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)arg;
    char text[32];
    unsigned long msecs = 0;
    if (!s_payload_text (input, size, text, sizeof text)
        || sscanf (text, "%lu", &msecs) != 1 || msecs > 3600000)
        return drover_output_fail (output, "spin: expected MS up to 3600000");
    struct timespec start, now;
    clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &start);
    volatile unsigned long turns = 0;
    do {
        for (int i = 0; i < 100000; i++)
            turns++;
        clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &now);
    } while ((unsigned long)((now.tv_sec - start.tv_sec) * 1000
                             + (now.tv_nsec - start.tv_nsec) / 1000000)
             < msecs);
    char reply[32];
    int length = snprintf (reply, sizeof reply, "%lu", msecs);
    return drover_output_write (output, reply, (size_t)length);
}

//  Returns the pid of the child that runs it.
static int
s_pid (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)input;
    (void)size;
    (void)arg;
    char reply[32];
    int length = snprintf (reply, sizeof reply, "%ld", (long)getpid ());
    return drover_output_write (output, reply, (size_t)length);
}

int
main (int argc, char **argv)
{
    const char *endpoint = argc > 1 ? argv[1] : getenv ("DROVER_CONNECT");
    unsigned children = argc > 2 ? (unsigned)atoi (argv[2]) : 2;
    unsigned long long max_memory_kb =
        argc > 3 ? strtoull (argv[3], NULL, 10) : 0;

    drover_worker_t *worker = drover_worker_new ();
    if (!worker) {
        fprintf (stderr, "worker_example: out of memory\n");
        return 1;
    }
    int rc = 0;
    if (endpoint)
        rc = drover_worker_set_endpoint (worker, endpoint);
    if (rc == 0)
        rc = drover_worker_set_children (worker, children);
    if (rc == 0)
        rc = drover_worker_add_handler (worker, "upper", s_upper, NULL);
    if (rc == 0)
        rc = drover_worker_add_handler (worker, "wordcount", s_wordcount, NULL);
    if (rc == 0)
        rc = drover_worker_add_handler (worker, "alloc", s_alloc, NULL);
    if (rc == 0)
        rc = drover_worker_add_handler (worker, "spin", s_spin, NULL);
    if (rc == 0)
        rc = drover_worker_add_handler (worker, "pid", s_pid, NULL);
    if (rc == 0)
        rc = drover_worker_set_max_memory_per_child (worker, max_memory_kb);
    if (rc) {
        fprintf (stderr,
                 "usage: worker_example [ENDPOINT [CHILDREN "
                 "[MAX_MEMORY_KB]]]: %s\n",
                 drover_strerror (rc));
        drover_worker_destroy (&worker);
        return 2;
    }
    rc = drover_worker_run (worker);
    drover_worker_destroy (&worker);
    if (rc) {
        fprintf (stderr, "worker_example: %s\n", drover_strerror (rc));
        return 1;
    }
    return 0;
}
