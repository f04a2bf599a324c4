/*  actor_start.c - starting a CZMQ actor that can fail to start.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "actor_start.h"

void
actor_start_report (zsock_t *pipe, const char *error)
{
    zsock_signal (pipe, 0);
    zstr_send (pipe, error ? error : "OK");
}

zactor_t *
actor_start (zactor_fn *actor_fn, void *args, const char *what, char **error)
{
    zactor_t *actor = zactor_new (actor_fn, args);
    assert (actor);
    char *status = zstr_recv (actor);
    if (status && streq (status, "OK")) {
        zstr_free (&status);
        return actor;
    }
    if (error)
        *error = status ? status : zsys_sprintf ("the %s did not start", what);
    else
        zstr_free (&status);
    zactor_destroy (&actor);
    return NULL;
}
