/*  drover_sink.h - the sink: a CZMQ actor that stores the first outcome of
    each task, tells the broker (DONE), acknowledges senders (STORED) and
    streams results to clients that WATCH them (proto/SPEC.md).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_SINK_H_INCLUDED
#define DROVER_SINK_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *endpoint;  //  where the sink's ROUTER binds
    const char *advertise; //  endpoint told to the broker; NULL: the bound
                           //  one
    const char *broker;    //  the broker endpoint to connect to
    uint64_t max_results;  //  result payload octets kept at most
    bool verbose;          //  log every message
} drover_sink_config_t;

/*  Starts a sink actor. Returns NULL if it cannot start, with a malloc'd
    reason in *error if error is not NULL (caller frees). */
zactor_t *drover_sink_new (const drover_sink_config_t *config, char **error);

/*  The endpoint the sink advertises. Caller frees. */
char *drover_sink_endpoint (zactor_t *sink);

#endif
