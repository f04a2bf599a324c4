/*  results.h - the results a node has sent to the sink and must keep until
    the sink answers STORED (SPEC.md 5.17): it sends each again when it was
    not stored within heartbeat_ms * liveness, and all of them after it
    connects to a new sink.

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

//  Sends the results never sent, and those sent resend_ms or more before
//  now_ms, to the sink, as RESULT messages of at most max_batch items
//  from node. Returns how many it sent; stops early when the socket is
//  full.
size_t results_send (results_t *self, zsock_t *sink, const char *node,
                     uint32_t max_batch, int64_t now_ms, int64_t resend_ms);

//  Forgets the result of (id, attempt): the sink has it. Returns false
//  when no such result was held.
bool results_stored (results_t *self, uint64_t id, uint32_t attempt);

//  Marks every result as never sent, so the next results_send sends all.
void results_resend_all (results_t *self);

//  How many results are held.
size_t results_size (results_t *self);

//  How many payload octets they hold.
size_t results_bytes (results_t *self);

#pragma GCC visibility pop

#endif
