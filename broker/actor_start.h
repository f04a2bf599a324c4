/*  actor_start.h - starting a CZMQ actor that can fail to start (a bind
    refused, say) and says why, for the broker and the sink.

    The actor calls actor_start_report once set up, with NULL or the reason
    it cannot run; actor_start_wait, on the creating side, returns the actor
    or NULL and that reason.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_ACTOR_START_H_INCLUDED
#define DROVER_ACTOR_START_H_INCLUDED

#include <czmq.h>

/*  In the actor: reports that it runs (error NULL) or cannot (error says
    why; the actor then returns). */
void actor_start_report (zsock_t *pipe, const char *error);

/*  Starts an actor and waits for its report. Returns the actor, or NULL
    with a malloc'd reason in *error (if error is not NULL; caller frees);
    what names the actor in that reason. */
zactor_t *actor_start (zactor_fn *actor_fn, void *args, const char *what,
                       char **error);

#endif
