/*  results.c - results waiting for the sink's STORED.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "results.h"

#include "drover_error.h"
#include "drover_wire.h"
#include <inttypes.h>

//  Payload octets above which a RESULT message takes no more items.
#define S_BATCH_OCTETS (16u << 20)

//  Where a result is.
typedef enum {
    S_WAITING,   //  in the waiting list, to be sent
    S_IN_FLIGHT, //  sent; its STORED is awaited until resend_at_ms
    S_REFUSED,   //  the sink's store was full; waits until resend_at_ms
} s_where_t;

//  The key of a result: its attempt.
typedef struct {
    uint64_t id;      //  task id
    uint32_t attempt; //  attempt that produced it
} s_key_t;

typedef struct {
    s_key_t key;          //  first: the hash table's key points here
    uint64_t elapsed_us;  //  run time of the attempt
    uint64_t cpu_us;      //  CPU time of the attempt
    uint64_t max_rss_kb;  //  peak memory of the child
    zframe_t *payload;    //  the result octets
    s_where_t where;      //  waiting, in flight or refused
    int64_t resend_at_ms; //  in flight or refused: when it is due again
    void *waiting_handle; //  its place in the waiting list while waiting
} s_result_t;

struct results_t {
    zhashx_t *items;   //  s_key_t -> s_result_t, owned
    zlistx_t *waiting; //  results to send, oldest first (not owned)
    size_t in_flight;  //  results sent whose STORED has not come
    size_t bytes;      //  payload octets held
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

static size_t
s_key_hash (const void *key)
{
    const s_key_t *k = (const s_key_t *)key;
    uint64_t h = (k->id ^ ((uint64_t)k->attempt << 40)) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h ^ (h >> 29));
}

static int
s_key_compare (const void *a, const void *b)
{
    const s_key_t *x = (const s_key_t *)a, *y = (const s_key_t *)b;
    if (x->id != y->id)
        return x->id < y->id ? -1 : 1;
    return x->attempt == y->attempt ? 0 : x->attempt < y->attempt ? -1 : 1;
}

results_t *
results_new (void)
{
    results_t *self = (results_t *)zmalloc (sizeof *self);
    if (!self)
        return NULL;
    self->items = zhashx_new ();
    self->waiting = zlistx_new ();
    if (!self->items || !self->waiting) {
        results_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->items, s_result_destroy);
    zhashx_set_key_hasher (self->items, s_key_hash);
    zhashx_set_key_comparator (self->items, s_key_compare);
    zhashx_set_key_duplicator (self->items, NULL);
    zhashx_set_key_destructor (self->items, NULL);
    return self;
}

void
results_destroy (results_t **self_p)
{
    assert (self_p);
    results_t *self = *self_p;
    if (!self)
        return;
    zlistx_destroy (&self->waiting);
    zhashx_destroy (&self->items);
    free (self);
    *self_p = NULL;
}

//  Puts a result at the end of the waiting list.
static void
s_wait (results_t *self, s_result_t *result)
{
    if (result->where == S_WAITING)
        return;
    if (result->where == S_IN_FLIGHT)
        self->in_flight--;
    result->where = S_WAITING;
    result->waiting_handle = zlistx_add_end (self->waiting, result);
    assert (result->waiting_handle);
}

//  Forgets a result.
static void
s_forget (results_t *self, s_result_t *result)
{
    if (result->where == S_WAITING)
        zlistx_detach (self->waiting, result->waiting_handle);
    else if (result->where == S_IN_FLIGHT)
        self->in_flight--;
    self->bytes -= zframe_size (result->payload);
    s_key_t key = result->key;
    zhashx_delete (self->items, &key);
}

void
results_add (results_t *self, uint64_t id, uint32_t attempt,
             zframe_t **payload_p, uint64_t elapsed_us, uint64_t cpu_us,
             uint64_t max_rss_kb)
{
    assert (self);
    assert (payload_p && *payload_p);
    s_key_t key = {id, attempt};
    s_result_t *old = (s_result_t *)zhashx_lookup (self->items, &key);
    if (old)
        s_forget (self, old);
    s_result_t *result = (s_result_t *)zmalloc (sizeof *result);
    assert (result);
    result->key = key;
    result->elapsed_us = elapsed_us;
    result->cpu_us = cpu_us;
    result->max_rss_kb = max_rss_kb;
    result->payload = *payload_p;
    *payload_p = NULL;
    int rc = zhashx_insert (self->items, &result->key, result);
    assert (rc == 0);
    result->where = S_REFUSED; //  not waiting yet: s_wait puts it there
    s_wait (self, result);
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
        tasks[i].id = batch[i]->key.id;
        tasks[i].attempt = batch[i]->key.attempt;
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
    size_t sent = 0;
    s_result_t **batch = NULL;
    while (zlistx_size (self->waiting) > 0
           && (self->in_flight == 0
               || zlistx_size (self->waiting) >= RESULTS_BATCH)) {
        if (!batch) {
            batch = (s_result_t **)zmalloc (max_batch * sizeof *batch);
            assert (batch);
        }
        size_t count = 0;
        size_t octets = 0;
        for (s_result_t *result = (s_result_t *)zlistx_first (self->waiting);
             result && count < max_batch && octets < S_BATCH_OCTETS;
             result = (s_result_t *)zlistx_next (self->waiting)) {
            batch[count++] = result;
            octets += zframe_size (result->payload);
        }
        int rc = s_send_batch (sink, node, batch, count);
        if (rc == DROVER_EIO)
            break; //  the sink's queue is full: later
        //  Also after an encoding error, logged by the wire: a result
        //  that cannot be encoded must not be retried at once
        for (size_t i = 0; i < count; i++) {
            zlistx_detach (self->waiting, batch[i]->waiting_handle);
            batch[i]->waiting_handle = NULL;
            batch[i]->where = S_IN_FLIGHT;
            batch[i]->resend_at_ms = now_ms + resend_ms;
            self->in_flight++;
        }
        if (rc == 0)
            sent += count;
    }
    free (batch);
    return sent;
}

size_t
results_resend_due (results_t *self, int64_t now_ms)
{
    assert (self);
    if (zlistx_size (self->waiting) == zhashx_size (self->items))
        return 0;
    size_t due = 0;
    for (s_result_t *result = (s_result_t *)zhashx_first (self->items); result;
         result = (s_result_t *)zhashx_next (self->items))
        if (result->where != S_WAITING && now_ms >= result->resend_at_ms) {
            s_wait (self, result);
            due++;
        }
    return due;
}

bool
results_stored (results_t *self, uint64_t id, uint32_t attempt, int32_t code,
                int64_t now_ms)
{
    assert (self);
    s_key_t key = {id, attempt};
    s_result_t *result = (s_result_t *)zhashx_lookup (self->items, &key);
    if (!result)
        return false;
    if (code == DROVER_EFULL) {
        if (result->where == S_WAITING)
            zlistx_detach (self->waiting, result->waiting_handle);
        else if (result->where == S_IN_FLIGHT)
            self->in_flight--;
        result->waiting_handle = NULL;
        result->where = S_REFUSED;
        result->resend_at_ms = now_ms + RESULTS_FULL_RETRY_MS;
    }
    else
        s_forget (self, result);
    return true;
}

void
results_resend_all (results_t *self)
{
    assert (self);
    for (s_result_t *result = (s_result_t *)zhashx_first (self->items); result;
         result = (s_result_t *)zhashx_next (self->items))
        s_wait (self, result);
}

size_t
results_size (results_t *self)
{
    assert (self);
    return zhashx_size (self->items);
}

size_t
results_in_flight (results_t *self)
{
    assert (self);
    return self->in_flight;
}

size_t
results_bytes (results_t *self)
{
    assert (self);
    return self->bytes;
}
