/*  drover_broker.h - the broker: a single-threaded reactor (a CZMQ actor)
    that speaks the broker role of proto/SPEC.md over one ROUTER socket.

    Usage:
        drover_broker_config_t config = drover_broker_config_default ();
        config.endpoint = "tcp://127.0.0.1:5555";
        zactor_t *broker = drover_broker_new (&config, &error);
        ...
        zactor_destroy (&broker);

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_BROKER_H_INCLUDED
#define DROVER_BROKER_H_INCLUDED

#include "drover_journal.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const char *endpoint;       //  where the ROUTER binds
    const char *sink_endpoint;  //  embedded sink binds here; NULL: none
    const char *sink_advertise; //  sink endpoint told to peers; NULL: the
                                //  embedded sink's bound endpoint
    //  Bound too, never told to peers: inproc:// endpoints of the ROUTER
    //  and of the embedded sink for a client in this process (the local
    //  cluster of drover map -j N), which then reaches them without
    //  ZeroMQ's I/O threads; NULL: none
    const char *local_endpoint;
    const char *sink_local_endpoint;
    uint32_t heartbeat_ms;       //  heartbeat interval
    uint32_t liveness;           //  intervals of silence before expiry
    uint64_t max_payload;        //  largest payload accepted
    uint64_t max_queued;         //  tasks held at most
    uint32_t max_attempts;       //  default attempts for failing tasks
    uint64_t max_results;        //  embedded sink: result octets kept
    uint64_t retry_delay_ms;     //  backoff of a first retry, unless the task
                                 //  sets one
    uint64_t retry_max_delay_ms; //  cap of the backoff, unless the task sets
                                 //  one
    uint64_t max_dead;           //  dead letters kept (0: none)
    const char *data_dir;        //  durable mode: journals in DATA/broker
                                 //  and (embedded sink) DATA/sink; NULL:
                                 //  in memory only
    drover_fsync_t fsync;        //  when journal writes reach the disk
    uint32_t sync_interval_ms;   //  BATCH: longest wait of an unsynced write
    uint64_t segment_size;       //  journal segment size (octets)
    uint64_t result_ttl_ms;      //  embedded sink: a result delivered at
                                 //  least once is forgotten this long after
                                 //  it was stored; 0: kept
    bool verbose;                //  log every message
    bool quiet;                  //  log warnings and errors only (a broker
                                 //  inside drover map -j N)
    bool sink_same_thread;       //  the embedded sink runs in the broker's
                                 //  thread, not a thread of its own: a
                                 //  result's claim wakes no other thread
} drover_broker_config_t;

/*  The defaults: heartbeat 1000 ms, liveness 5, max payload 64 MiB,
    1,000,000 queued tasks, 1 attempt, 1 GiB of results, retries after
    1000 ms doubling up to 60000 ms, 10,000 dead letters; no data
    directory, and with one: fsync batch, 200 ms, 64 MiB segments; results
    kept 24 hours after they were stored and delivered. */
drover_broker_config_t drover_broker_config_default (void);

/*  Starts a broker actor. Returns NULL if it cannot start (the endpoint
    cannot be bound, say), with a malloc'd reason in *error if error is not
    NULL (caller frees). zactor_destroy stops it: it tells its nodes to
    drain first. */
zactor_t *drover_broker_new (const drover_broker_config_t *config,
                             char **error);

/*  The endpoint the broker bound (resolves tcp://...:* ports). Caller
    frees. */
char *drover_broker_endpoint (zactor_t *broker);

/*  The sink endpoint the broker tells peers, or "" if none yet. Caller
    frees. */
char *drover_broker_sink_endpoint (zactor_t *broker);

#endif
