/*  handlers.c - the built-in handlers.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "handlers.h"

#include "drover_msg.h"
#include <ctype.h>
#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

//  The longest sleep the sleep handler agrees to: one day.
#define S_MAX_SLEEP_MS (24ull * 3600 * 1000)

static int
s_echo (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)arg;
    return drover_output_write (output, input, size);
}

//  Parses a whole number of milliseconds, allowing blanks around it.
static int
s_parse_msecs (const char *text, size_t size, uint64_t *msecs)
{
    size_t at = 0;
    while (at < size && isspace ((unsigned char)text[at]))
        at++;
    size_t digits = 0;
    uint64_t value = 0;
    while (at < size && isdigit ((unsigned char)text[at])) {
        value = value * 10 + (uint64_t)(text[at] - '0');
        if (value > S_MAX_SLEEP_MS)
            return -1;
        at++;
        digits++;
    }
    while (at < size && isspace ((unsigned char)text[at]))
        at++;
    if (digits == 0 || at != size)
        return -1;
    *msecs = value;
    return 0;
}

static int
s_sleep (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)arg;
    uint64_t msecs;
    if (s_parse_msecs ((const char *)input, size, &msecs))
        return drover_output_fail (
            output, "sleep: the payload must be a number of milliseconds "
                    "up to 86400000, e.g. '250'");
    //  As exact as the kernel allows: an absolute deadline (signals do not
    //  stretch it) and, while sleeping, the least timer slack (the default
    //  50 us would add 5 % to a 1 ms sleep)
    struct timespec deadline;
    clock_gettime (CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += (time_t)(msecs / 1000);
    deadline.tv_nsec += (long)(msecs % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    int slack = prctl (PR_GET_TIMERSLACK, 0, 0, 0, 0);
    prctl (PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL)
           == EINTR)
        ;
    if (slack > 0)
        prctl (PR_SET_TIMERSLACK, (unsigned long)slack, 0, 0, 0);
    return drover_output_write (output, input, size);
}

static int
s_fail (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)arg;
    char message[DROVER_MAX_TEXT + 1];
    if (size > DROVER_MAX_TEXT)
        size = DROVER_MAX_TEXT;
    memcpy (message, input, size);
    for (size_t i = 0; i < size; i++)
        if (message[i] == 0)
            message[i] = '?';
    message[size] = 0;
    return drover_output_fail (output, "%s", message);
}

static int
s_crash (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)input;
    (void)size;
    (void)output;
    (void)arg;
    //  A deliberate crash needs no core file
    struct rlimit none = {0, 0};
    setrlimit (RLIMIT_CORE, &none);
    abort ();
}

static int
s_sha256 (const void *input, size_t size, drover_output_t *output, void *arg)
{
    (void)arg;
    unsigned char hash[crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (hash, (const unsigned char *)input,
                        (unsigned long long)size);
    char hex[crypto_hash_sha256_BYTES * 2 + 1];
    sodium_bin2hex (hex, sizeof hex, hash, sizeof hash);
    return drover_output_write (output, hex, crypto_hash_sha256_BYTES * 2);
}

typedef struct {
    const char *name;      //  the built-in's name
    drover_handler_fn *fn; //  its function
} s_builtin_t;

static const s_builtin_t s_builtins[] = {
    {"echo", s_echo},   {"sleep", s_sleep},   {"fail", s_fail},
    {"crash", s_crash}, {"sha256", s_sha256},
};

drover_handler_fn *
handlers_builtin (const char *name)
{
    for (size_t i = 0; i < sizeof s_builtins / sizeof s_builtins[0]; i++)
        if (!strcmp (name, s_builtins[i].name))
            return s_builtins[i].fn;
    return NULL;
}

const char *
handlers_builtin_name (size_t index)
{
    return index < sizeof s_builtins / sizeof s_builtins[0]
               ? s_builtins[index].name
               : NULL;
}
