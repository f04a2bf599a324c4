/*  results.c - results waiting for the sink's STORED.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "results.h"

#include "drover_wire.h"
#include <inttypes.h>

//  Payload octets above which a RESULT message takes no more items.
#define S_BATCH_OCTETS (16u << 20)

//  Longest key: two numbers and a slash.
#define S_KEY_SIZE 32

typedef struct {
    uint64_t id;         //  task id
    uint32_t attempt;    //  attempt that produced it
    uint64_t elapsed_us; //  run time of the attempt
    uint64_t cpu_us;     //  CPU time of the attempt
    uint64_t max_rss_kb; //  peak memory of the child
    zframe_t *payload;   //  the result octets
    int64_t sent_ms;     //  when last sent; 0: not sent since added or reset
} s_result_t;

struct results_t {
    zhashx_t *items; //  "id/attempt" -> s_result_t
    size_t bytes;    //  payload octets held
};

static void
s_result_destroy (void **item_p)
{
    s_result_t *result = (s_result_t *)*item_p;
    if (result) {
        zframe_destroy (&result->payload);
        free (result);
        *item_p = NULL;
    }
}

static void
s_key (char *key, uint64_t id, uint32_t attempt)
{
    snprintf (key, S_KEY_SIZE, "%" PRIu64 "/%" PRIu32, id, attempt);
}

results_t *
results_new (void)
{
    results_t *self = (results_t *)zmalloc (sizeof *self);
    if (!self)
        return NULL;
    self->items = zhashx_new ();
    if (!self->items) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->items, s_result_destroy);
    return self;
}

void
results_destroy (results_t **self_p)
{
    assert (self_p);
    results_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->items);
    free (self);
    *self_p = NULL;
}

void
results_add (results_t *self, uint64_t id, uint32_t attempt,
             zframe_t **payload_p, uint64_t elapsed_us, uint64_t cpu_us,
             uint64_t max_rss_kb)
{
    assert (self);
    assert (payload_p && *payload_p);
    results_stored (self, id, attempt);
    s_result_t *result = (s_result_t *)zmalloc (sizeof *result);
    assert (result);
    result->id = id;
    result->attempt = attempt;
    result->elapsed_us = elapsed_us;
    result->cpu_us = cpu_us;
    result->max_rss_kb = max_rss_kb;
    result->payload = *payload_p;
    *payload_p = NULL;
    char key[S_KEY_SIZE];
    s_key (key, id, attempt);
    int rc = zhashx_insert (self->items, key, result);
    assert (rc == 0);
    self->bytes += zframe_size (result->payload);
}

//  Sends one RESULT with the count results in batch; returns 0 or the
//  wire's error.
static int
s_send_batch (zsock_t *sink, const char *node, s_result_t **batch, size_t count)
{
    drover_task_t *tasks = (drover_task_t *)zmalloc (count * sizeof *tasks);
    zframe_t **payloads = (zframe_t **)zmalloc (count * sizeof *payloads);
    assert (tasks && payloads);
    for (size_t i = 0; i < count; i++) {
        tasks[i].id = batch[i]->id;
        tasks[i].attempt = batch[i]->attempt;
        tasks[i].code = 0;
        tasks[i].node = node;
        tasks[i].elapsed_us = batch[i]->elapsed_us;
        tasks[i].cpu_us = batch[i]->cpu_us;
        tasks[i].max_rss_kb = batch[i]->max_rss_kb;
        tasks[i].payload.data = zframe_data (batch[i]->payload);
        tasks[i].payload.size = zframe_size (batch[i]->payload);
        payloads[i] = batch[i]->payload;
    }
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RESULT);
    msg.tasks = tasks;
    msg.task_count = count;
    int rc = drover_wire_send (sink, NULL, &msg, payloads);
    free (tasks);
    free (payloads);
    return rc;
}

size_t
results_send (results_t *self, zsock_t *sink, const char *node,
              uint32_t max_batch, int64_t now_ms, int64_t resend_ms)
{
    assert (self);
    assert (sink);
    assert (max_batch > 0);
    if (zhashx_size (self->items) == 0)
        return 0;
    s_result_t **batch =
        (s_result_t **)zmalloc (max_batch * sizeof (s_result_t *));
    assert (batch);
    size_t sent = 0;
    bool full = false;
    s_result_t *result = (s_result_t *)zhashx_first (self->items);
    while (!full) {
        size_t count = 0;
        size_t octets = 0;
        for (; result && count < max_batch && octets < S_BATCH_OCTETS;
             result = (s_result_t *)zhashx_next (self->items))
            if (result->sent_ms == 0 || now_ms - result->sent_ms >= resend_ms) {
                batch[count++] = result;
                octets += zframe_size (result->payload);
            }
        if (count == 0)
            break;
        int rc = s_send_batch (sink, node, batch, count);
        if (rc == DROVER_EIO)
            full = true; //  the sink's queue is full: later
        else {
            //  Also after an encoding error, logged by the wire: a result
            //  that cannot be encoded must not be retried at once
            for (size_t i = 0; i < count; i++)
                batch[i]->sent_ms = now_ms > 0 ? now_ms : 1;
            if (rc == 0)
                sent += count;
        }
    }
    free (batch);
    return sent;
}

bool
results_stored (results_t *self, uint64_t id, uint32_t attempt)
{
    assert (self);
    char key[S_KEY_SIZE];
    s_key (key, id, attempt);
    s_result_t *result = (s_result_t *)zhashx_lookup (self->items, key);
    if (!result)
        return false;
    self->bytes -= zframe_size (result->payload);
    zhashx_delete (self->items, key);
    return true;
}

void
results_resend_all (results_t *self)
{
    assert (self);
    for (s_result_t *result = (s_result_t *)zhashx_first (self->items); result;
         result = (s_result_t *)zhashx_next (self->items))
        result->sent_ms = 0;
}

size_t
results_size (results_t *self)
{
    assert (self);
    return zhashx_size (self->items);
}

size_t
results_bytes (results_t *self)
{
    assert (self);
    return self->bytes;
}
