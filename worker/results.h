/*  results.h - the results a node has sent to the sink and must keep until
    the sink answers STORED (SPEC.md 5.17): it sends each again when it was
    not stored within heartbeat_ms * liveness, after a STORED DROVER_EFULL
    (a little later), and all of them after it connects to a new sink.

    Results go out in batches that clock themselves: while no RESULT is
    waiting for its STORED, a new result leaves at once (no added latency
    when the load is light); while one is, new results wait until it is
    stored or until RESULTS_BATCH of them are waiting, so under load each
    RESULT (and the sink's claim, verdict and STORED that follow it)
    carries many results.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_RESULTS_H_INCLUDED
#define DROVER_RESULTS_H_INCLUDED

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

//  Internal to libdrover: not exported from the shared library
#pragma GCC visibility push(hidden)

//  Results waiting that make a RESULT leave while another is in flight.
#define RESULTS_BATCH 64

//  How long a result the sink refused for a full store waits (ms).
#define RESULTS_FULL_RETRY_MS 250

typedef struct results_t results_t;

//  Creates an empty set. Returns NULL when out of memory.
results_t *results_new (void);

//  Destroys the set and the results in it. NULL-safe.
void results_destroy (results_t **self_p);

//  Adds the successful outcome of attempt (id, attempt), not sent yet.
//  Takes the payload frame. A result already held for the same attempt
//  is replaced.
void results_add (results_t *self, uint64_t id, uint32_t attempt,
                  zframe_t **payload_p, uint64_t elapsed_us, uint64_t cpu_us,
                  uint64_t max_rss_kb);

//  Sends waiting results to the sink, oldest first, as RESULT messages of
//  at most max_batch items from node, when the batching rule above lets
//  them go. A result sent waits resend_ms for its STORED before it is
//  due again (results_resend_due). Returns how many it sent; stops early
//  when the socket is full.
size_t results_send (results_t *self, zsock_t *sink, const char *node,
                     uint32_t max_batch, int64_t now_ms, int64_t resend_ms);

//  Makes the results whose STORED is overdue, and refused ones whose wait
//  is over, wait to be sent again. Returns how many.
size_t results_resend_due (results_t *self, int64_t now_ms);

//  The sink answered STORED for (id, attempt) with code: DROVER_EFULL
//  keeps the result and sends it again after RESULTS_FULL_RETRY_MS; any
//  other code forgets it (the sink has it, or refused it for good).
//  Returns false when no such result was held.
bool results_stored (results_t *self, uint64_t id, uint32_t attempt,
                     int32_t code, int64_t now_ms);

//  Makes every result wait to be sent, so the next results_send sends all.
void results_resend_all (results_t *self);

//  How many results are held.
size_t results_size (results_t *self);

//  How many of them were sent and wait for their STORED.
size_t results_in_flight (results_t *self);

//  How many payload octets they hold.
size_t results_bytes (results_t *self);

#pragma GCC visibility pop

#endif
