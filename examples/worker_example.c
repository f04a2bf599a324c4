/*  worker_example.c - a worker node with C handlers, built on libdrover.

    Usage: worker_example [ENDPOINT [CHILDREN]]
    (defaults: $DROVER_CONNECT or tcp://127.0.0.1:5555, and 2 children)

    It offers two handlers: 'upper' returns its payload in capitals, and
    'wordcount' returns the number of words in it. A client calls them by
    name, e.g. `drover submit upper 'hello world'`. SIGTERM or Ctrl-C
    drains the node and ends the program.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_worker.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

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

int
main (int argc, char **argv)
{
    const char *endpoint = argc > 1 ? argv[1] : getenv ("DROVER_CONNECT");
    unsigned children = argc > 2 ? (unsigned)atoi (argv[2]) : 2;

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
    if (rc) {
        fprintf (stderr, "usage: worker_example [ENDPOINT [CHILDREN]]: %s\n",
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
