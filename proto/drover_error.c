/*  drover_error.c - descriptions of Drover's error codes.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_error.h"

typedef struct {
    const char *name;
    const char *text;
} s_error_t;

static const s_error_t s_errors[] = {
    {"DROVER_OK", "success"},
    {"DROVER_EINVAL", "invalid argument"},
    {"DROVER_ENOMEM", "out of memory"},
    {"DROVER_EPROTO", "malformed message"},
    {"DROVER_EVERSION", "unsupported protocol version"},
    {"DROVER_ECOMMAND", "unknown or unexpected command"},
    {"DROVER_ETOOBIG", "message, field or payload over its limit"},
    {"DROVER_ETIMEDOUT", "timed out"},
    {"DROVER_EFULL", "queue full, retry later"},
    {"DROVER_ENOTFOUND", "no such task"},
    {"DROVER_ESTALE", "stale attempt or duplicate result"},
    {"DROVER_EHANDLER", "no such handler"},
    {"DROVER_EFAILED", "task failed"},
    {"DROVER_ECRASHED", "child crashed while running the task"},
    {"DROVER_ECANCELLED", "task cancelled"},
    {"DROVER_EDENIED", "command not permitted for this peer"},
    {"DROVER_ECONNECT", "cannot reach peer"},
    {"DROVER_EIO", "input/output error"},
    {"DROVER_ESHUTDOWN", "peer is shutting down"},
    {"DROVER_ETIMELIMIT", "task exceeded its time limit"},
    {"DROVER_ELOST", "node running the task was lost"},
    {"DROVER_ESYSTEM", "system call failed"},
    {"DROVER_EMEMLIMIT", "child exceeded its memory limit"},
    {"DROVER_ESTORAGE", "cannot write the journal (disk full or I/O error)"},
};

_Static_assert(sizeof s_errors / sizeof s_errors[0] == 1 - DROVER_ELAST,
               "one description per error code");

static const s_error_t *
s_lookup (int code)
{
    if (code > 0 || code < DROVER_ELAST)
        return 0;
    return &s_errors[-code];
}

const char *
drover_strerror (int code)
{
    const s_error_t *error = s_lookup (code);
    return error ? error->text : "unknown error";
}

const char *
drover_strcode (int code)
{
    const s_error_t *error = s_lookup (code);
    return error ? error->name : "DROVER_E?";
}
