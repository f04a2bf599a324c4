/*  drover_sink.h - the sink: a CZMQ actor that stores the first outcome of
    each task, tells the broker (DONE), acknowledges senders (STORED) and
    streams results to clients that WATCH them (proto/SPEC.md).

    With a data directory the sink keeps its results in a journal
    (proto/JOURNAL.md, "Sink journal"): it acknowledges a result (STORED)
    and publishes it only once its record is committed, and a restarted
    sink serves every result it had not forgotten.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_SINK_H_INCLUDED
#define DROVER_SINK_H_INCLUDED

#include "drover_journal.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

/*  Settings. A field left zero keeps the behaviour of a sink without
    durability or retention; drover_sink_config_default gives the
    recommended values (callers that zero the struct and set data_dir
    should set fsync too: zero is DROVER_FSYNC_NEVER). */
typedef struct {
    const char *endpoint;  //  where the sink's ROUTER binds
    const char *advertise; //  endpoint told to the broker; NULL: the bound
                           //  one
    //  Bound too, never advertised: an inproc:// endpoint for a client in
    //  this process, which then reaches the sink without ZeroMQ's I/O
    //  threads; NULL: none
    const char *local_endpoint;
    const char *broker;        //  the broker endpoint to connect to
    uint64_t max_results;      //  result payload octets kept at most
    bool verbose;              //  log every message
    bool quiet;                //  log warnings and errors only
    const char *data_dir;      //  journal directory; NULL: results in memory
                               //  only, lost when the sink stops
    drover_fsync_t fsync;      //  when journal writes reach the disk
    uint32_t sync_interval_ms; //  BATCH: longest wait for an fdatasync;
                               //  0: 200 ms
    uint64_t segment_size;     //  journal segment size; 0: the journal's
                               //  default (64 MiB)
    uint64_t result_ttl_ms;    //  a result delivered to a watcher at least
                               //  once is forgotten this long after it was
                               //  stored (an undelivered one never is);
                               //  0: kept until released or forever
} drover_sink_config_t;

/*  Defaults: 1 GiB of results, fsync BATCH every 200 ms, results kept 24
    hours once delivered, no data directory; endpoint and broker NULL (the
    caller sets them). */
drover_sink_config_t drover_sink_config_default (void);

/*  Starts a sink actor. With data_dir it first reads back its journal
    (logging a summary). Returns NULL if it cannot start (a bind refused,
    a journal that cannot be opened or read: another process holds it),
    with a malloc'd reason in *error if error is not NULL (caller frees). */
zactor_t *drover_sink_new (const drover_sink_config_t *config, char **error);

/*  A sink that runs in the caller's reactor (a thread of its own saved):
    the embedded sink of a broker whose client is in the same process, so
    that a result's claim is no wake-up of another thread. Returns NULL if
    it cannot start, with a malloc'd reason in *error (if not NULL).
    drover_sink_detach stops it (its sockets and timers leave the loop,
    which goes on) and NULLs the pointer; NULL-safe. Detach it before the
    loop is destroyed. */
typedef struct drover_sink_t drover_sink_t;
drover_sink_t *drover_sink_attach (zloop_t *loop,
                                   const drover_sink_config_t *config,
                                   char **error);
void drover_sink_detach (drover_sink_t **self_p);

/*  The endpoint the sink advertises. Caller frees. */
char *drover_sink_endpoint (zactor_t *sink);

/*  The sink's figures. */
typedef struct {
    uint64_t results;          //  results held
    uint64_t unjournaled;      //  accepted, waiting for their journal
                               //  record: not acknowledged or published
    uint64_t stored_octets;    //  payload octets held
    uint64_t restored;         //  results read back from the journal
    uint64_t skipped;          //  journal records replay could not use
    uint64_t corrupt;          //  damaged journal regions set aside
    uint64_t journal_octets;   //  octets in the journal now
    uint64_t live_octets;      //  octets of the journal records needed
    uint64_t relocated;        //  records compaction wrote again
    uint64_t storage_failures; //  journal commits that failed
    uint64_t expired;          //  results forgotten after result_ttl_ms
    uint64_t stored;           //  results accepted
    uint64_t stale;            //  results refused as stale
    uint64_t full;             //  results refused: store full
    uint64_t malformed;        //  malformed messages
    bool storage_failing;      //  the journal refuses writes now
} drover_sink_stats_t;

/*  Asks the sink for its figures. Returns 0, or DROVER_EIO if it did not
    answer. */
int drover_sink_stats (zactor_t *sink, drover_sink_stats_t *stats);

#endif
