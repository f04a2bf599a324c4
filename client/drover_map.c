/*  drover_map.c - one handler over a stream of inputs, in a bounded
    window.

    Each input gets a slot when it is read and keeps it until its result
    is handed back, so `window` slots bound the memory and the tasks in
    flight. Inputs go to the broker in batches (SUBMIT, at most max_batch
    tasks each); a batch refused with DROVER_EFULL is sent again after a
    backoff. The ids of accepted tasks are watched on the sink with
    release (the sink may forget a result once sent); their results land
    in their slots.

    A slot keeps its input until its result comes, so that when the
    broker restarts (drover_client_broker_restarts grows: it lost its
    tasks, SPEC.md 7.6) the map submits every task still waiting again,
    under its id, in batches marked `again`. The broker deduplicates; the
    client hands on one result per id, so each input still gets exactly
    one result.

    Ordered maps hand results back by input index: slot i sits at
    order[i % window], which never collides because at most window inputs
    lie between the oldest not handed back and the newest read. Unordered
    maps hand results back from a ring, in the order they came.

    The map refills its window only when a good part of it is free (or it
    is empty), so that SUBMITs carry many tasks rather than one each.

    With a chunksize, inputs are gathered into chunks (SPEC.md 7.7): a slot
    then holds one chunk, the window counts chunks, and when the chunk's
    result comes it is split into one result per input, handed back in
    order from a list of pending results. The job log and resubmission see
    chunks as tasks like any other. Automatic chunks start at one input
    and then follow a moving average of the time an input takes (from the
    results' run times), to about MAP_CHUNK_TARGET_NS of work per chunk.

    A chunk of more than one input that fails as a whole because its child
    crashed or passed a time or memory limit is split (SPEC.md 7.7): its
    slot keeps the chunk's payload (kept for resubmission anyway) and gets
    an s_split_t, and each of its inputs runs again as a task of its own,
    in a slot of a second pool of `window` slots (input slots, whose
    `parent` is the chunk's slot). Their results land in the split, by
    place; once every input has one, the chunk's slot is done and its
    results are handed back in order like a chunk's. Input slots count
    against the window when inputs are read, so the tasks in flight stay
    about `window`. A job logs the split's outcomes as the chunk's result
    (a chunk result, as a node would have sent it), not the tasks of the
    split: a re-run finds the chunk done, or runs it again.

    With a job log (drover_job.h) the map asks the log about each input it
    reads: a logged result is handed back as it is; a logged task id
    without a result is asked about (STATUS, the broker first, then the
    sink for the ids the broker does not know or keeps as dead letters):
    a task either of them holds is only watched, one neither holds is
    submitted again under its id (SPEC.md 7.6), and one that was
    cancelled, or a dead letter the sink no longer holds (its result went
    to a run that died before logging it), runs as a new task. Ids
    are logged as the broker accepts them, results as the sink delivers
    them, and the log is synced before a result whose record is not on
    disk yet is handed back (one fdatasync for all that came together).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_map.h"
#include "drover_chunk.h"
#include "drover_client_internal.h"
#include "drover_job.h"

#define MAP_DEFAULT_WINDOW     1000
#define MAP_FIRST_BATCH        32       //  most tasks of an idle map's SUBMIT
#define MAP_BACKOFF_MIN_MS     20       //  first wait after DROVER_EFULL
#define MAP_BACKOFF_MAX_MS     2000     //  longest wait after DROVER_EFULL
#define MAP_INPUT_RETRY_MS     10       //  ask a slow input again (without fd)
#define MAP_SUBMIT_TIMEOUT_MIN 30000    //  least wait for SUBMITTED (ms)
#define MAP_CHUNK_TARGET_NS    10000000 //  automatic chunks: work of one
#define MAP_AUTO_CHUNK_OCTETS  16384    //  automatic chunks: most input

_Static_assert(DROVER_MAP_MAX_CHUNKSIZE == DROVER_MAX_ITEMS,
               "the public limit is the protocol's");

#define ASK_BROKER 1 //  a STATUS batch to the broker
#define ASK_SINK   2 //  a STATUS batch to the sink

typedef struct s_slot_t s_slot_t;
typedef struct s_batch_t s_batch_t;
typedef struct s_split_t s_split_t;

//  One input, from when it is read to when its result is handed back.
struct s_slot_t {
    drover_map_t *map;       //  the map, for the result callback
    uint64_t index;          //  the input's index, from 0
    uint64_t id;             //  task id; 0 until the broker accepted it
    zframe_t *payload;       //  the input, until its result came
    drover_result_t *result; //  the outcome, once it came
    s_batch_t *batch;        //  the batch it waits in to be submitted
    s_slot_t *next_free;     //  next in the free list
    uint64_t digest;         //  job: digest of the input
    uint64_t log_seq;        //  job: its result's record; 0: none
    bool dead;               //  job: the broker keeps it as a dead letter
    uint64_t first_item;     //  index of its (first) input
    uint32_t items;          //  inputs of its chunk; 0: not a chunk
    s_split_t *split;        //  its chunk runs input by input, or NULL
    s_slot_t *parent;        //  an input of a split chunk: the chunk's slot
    uint32_t item;           //  an input of a split chunk: its place
};

//  A chunk that failed as a whole (crash, time or memory limit), whose
//  inputs run again, each as a task of its own.
struct s_split_t {
    zframe_t *chunk;              //  its inputs, until every one is sent
    drover_chunk_reader_t reader; //  at the next input to send
    drover_result_t *failure;     //  the chunk's own outcome
    drover_result_t **results;    //  each input's outcome, by place
    uint32_t items;               //  inputs of the chunk
    uint32_t sent;                //  inputs made tasks (or ended)
    uint32_t done;                //  inputs with an outcome
    s_slot_t *next;               //  next chunk with inputs to send
};

//  A SUBMIT: tasks sent, accepted or refused together.
struct s_batch_t {
    drover_map_t *map; //  the map, for the reply callback
    s_slot_t **slots;  //  its tasks, up to max_batch; NULL: one whose
                       //  result came while it was submitted again
    size_t count;      //  how many
    bool again;        //  tasks submitted again under their ids
    int ask;           //  not a SUBMIT but a STATUS of logged tasks:
                       //  ASK_BROKER or ASK_SINK; 0: a SUBMIT
    uint64_t ref;      //  the SUBMIT's ref while it waits for a reply
    int64_t sent_at;   //  when it was sent
    int64_t retry_at;  //  when to send it again; 0: not waiting to
    s_batch_t *next;   //  next in the map's list of batches
};

struct drover_map_t {
    drover_client_t *client;       //  the session; not owned
    char *handler;                 //  handler of every task
    char *queue;                   //  queue of every task, or NULL
    drover_task_options_t options; //  the other task options
    size_t window;                 //  most tasks in flight
    bool ordered;                  //  results in input order
    size_t max_batch;              //  most tasks per SUBMIT
    uint64_t max_payload;          //  largest input accepted
    int submit_timeout_ms;         //  wait for SUBMITTED; -1: for ever
    drover_map_input_fn *input_fn; //  gives inputs
    void *input_arg;               //  input_fn's argument
    int input_fd;                  //  where inputs come from, or -1
    bool input_ended;              //  no more inputs will be read
    bool input_later;              //  input_fn said none is ready yet
    int64_t input_retry_at;        //  when to ask input_fn again
    bool cancelled;                //  drover_map_cancel was called
    uint64_t restarts;             //  broker restarts handled
    uint64_t resubmitted;          //  tasks submitted again after them
    int error;                     //  what stopped the map, or 0
    char reason[512];              //  why, in words
    uint64_t inputs;               //  inputs read
    uint64_t outputs;              //  results handed back
    s_slot_t *slots;               //  window slots
    s_slot_t *free_slots;          //  slots not in use
    s_slot_t **order;              //  ordered: slot of index i at i%window
    s_slot_t **ready;              //  unordered: ring of slots with results
    size_t ready_head;             //  first in the ring
    size_t ready_count;            //  how many in the ring
    s_batch_t *filling;            //  batch being filled, not yet sent
    s_batch_t *batches;            //  batches sent or waiting to be
    uint32_t backoff_ms;           //  next wait after DROVER_EFULL
    uint64_t jitter;               //  random state for backoff jitter
    drover_task_t *tasks;          //  scratch: SUBMIT items, max_batch
    zframe_t **frames;             //  scratch: SUBMIT payloads, max_batch
    uint64_t *ids;                 //  scratch: task ids, max_batch
    void **args;                   //  scratch: WATCH callbacks' args
    drover_job_t *job;             //  the job log, or NULL; not owned
    s_batch_t *asking;             //  job: STATUS batch being filled
    uint64_t *ask_ids;             //  job scratch: STATUS ids, max_batch
    uint64_t *indexes;             //  job scratch: inputs, max_batch
    uint64_t *digests;             //  job scratch: digests, max_batch
    uint64_t from_log;             //  results handed back from the log
    uint64_t found;                //  logged tasks the cluster still held
    uint32_t chunksize;            //  most inputs per chunk; 0: no chunks
    bool chunk_auto;               //  chunk sizes follow input_ns
    int64_t input_ns;              //  auto: moving average of the run time
                                   //  of one input; -1 before a result
    drover_chunk_writer_t chunk;   //  the chunk being filled
    uint64_t chunk_first;          //  index of its first input
    uint64_t items_in;             //  inputs read
    uint64_t items_out;            //  results handed back, one per input
    drover_result_t **pending;     //  results of a chunk's inputs, in order
    size_t pending_count;          //  how many
    size_t pending_at;             //  the next to hand back
    s_slot_t *inputs_pool;         //  split: slots of inputs, window of them
    s_slot_t *free_inputs;         //  split: those not in use
    size_t inputs_busy;            //  split: those in use
    s_slot_t *split_head;          //  split chunks with inputs to send
    s_slot_t *split_tail;          //  the last of them
    s_batch_t *split_batch;        //  split inputs being gathered to send
};

static void s_split_input_done (drover_map_t *self, s_slot_t *input,
                                drover_result_t *result);
static void s_split_free (s_split_t *split);
static drover_result_t *s_pending_next (drover_map_t *self);

//  --------------------------------------------------------------------------
//  Helpers

//  Stops the map with an error; the first error wins.
static int s_stop (drover_map_t *self, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));
static int
s_stop (drover_map_t *self, int code, const char *format, ...)
{
    if (!self->error) {
        self->error = code;
        va_list args;
        va_start (args, format);
        vsnprintf (self->reason, sizeof self->reason, format, args);
        va_end (args);
    }
    self->input_ended = true;
    return self->error;
}

static int
s_error (drover_map_t *self)
{
    return drover_client_fail (self->client, self->error, "%s", self->reason);
}

static s_slot_t *
s_slot_new (drover_map_t *self)
{
    s_slot_t *slot = self->free_slots;
    assert (slot); //  in_flight < window guarantees one
    self->free_slots = slot->next_free;
    *slot = (s_slot_t){.map = self, .index = self->inputs++};
    if (self->ordered)
        self->order[slot->index % self->window] = slot;
    return slot;
}

static void
s_slot_free (drover_map_t *self, s_slot_t *slot)
{
    if (self->ordered)
        self->order[slot->index % self->window] = NULL;
    zframe_destroy (&slot->payload);
    drover_result_destroy (&slot->result);
    s_split_free (slot->split);
    slot->split = NULL;
    slot->next_free = self->free_slots;
    self->free_slots = slot;
}

//  Takes a slot out of the batch it waits in, if any.
static void
s_slot_detach (s_slot_t *slot)
{
    s_batch_t *batch = slot->batch;
    if (!batch)
        return;
    for (size_t i = 0; i < batch->count; i++)
        if (batch->slots[i] == slot)
            batch->slots[i] = NULL;
    slot->batch = NULL;
}

//  Gives a slot its result and, in an unordered map, queues it; gives
//  the input of a split chunk its result in the split.
static void
s_slot_done (drover_map_t *self, s_slot_t *slot, drover_result_t *result)
{
    if (slot->parent) {
        s_split_input_done (self, slot, result);
        return;
    }
    assert (!slot->result);
    slot->result = result;
    zframe_destroy (&slot->payload);
    s_slot_detach (slot);
    if (!self->ordered) {
        size_t tail = (self->ready_head + self->ready_count) % self->window;
        self->ready[tail] = slot;
        self->ready_count++;
    }
}

//  Ends a slot's task without the broker; out of memory stops the map.
static void
s_slot_fail (drover_map_t *self, s_slot_t *slot, int code, const char *reason)
{
    drover_result_t *result = drover_result_new_local (slot->id, code, reason);
    if (result)
        s_slot_done (self, slot, result);
    else
        s_stop (self, DROVER_ENOMEM, "out of memory");
}

//  The slot whose result is due, or NULL.
static s_slot_t *
s_slot_due (drover_map_t *self)
{
    if (self->ordered) {
        if (self->outputs == self->inputs)
            return NULL;
        s_slot_t *slot = self->order[self->outputs % self->window];
        return slot && slot->result ? slot : NULL;
    }
    return self->ready_count ? self->ready[self->ready_head] : NULL;
}

static size_t
s_in_flight (drover_map_t *self)
{
    return (size_t)(self->inputs - self->outputs);
}

//  Slot i of the window's, then of the split chunks' inputs'.
static s_slot_t *
s_slot_at (drover_map_t *self, size_t i)
{
    return i < self->window ? &self->slots[i]
                            : &self->inputs_pool[i - self->window];
}

//  Tasks the window has room for: slots not in flight, less the inputs of
//  split chunks that run as tasks of their own.
static size_t
s_room (drover_map_t *self)
{
    size_t busy = s_in_flight (self) + self->inputs_busy;
    return busy < self->window ? self->window - busy : 0;
}

static uint32_t
s_random (drover_map_t *self)
{
    //  xorshift64: jitter only, no need for quality
    self->jitter ^= self->jitter << 13;
    self->jitter ^= self->jitter >> 7;
    self->jitter ^= self->jitter << 17;
    return (uint32_t)(self->jitter >> 32);
}

//  --------------------------------------------------------------------------
//  Batches

static s_batch_t *
s_batch_new (drover_map_t *self)
{
    s_batch_t *batch = (s_batch_t *)calloc (1, sizeof *batch);
    if (batch)
        batch->slots = (s_slot_t **)calloc (self->max_batch, sizeof (void *));
    if (!batch || !batch->slots) {
        free (batch);
        return NULL;
    }
    batch->map = self;
    return batch;
}

//  Takes a batch out of the map's list and frees it (not its slots).
static void
s_batch_destroy (drover_map_t *self, s_batch_t *batch)
{
    for (s_batch_t **link = &self->batches; *link; link = &(*link)->next)
        if (*link == batch) {
            *link = batch->next;
            break;
        }
    if (self->filling == batch)
        self->filling = NULL;
    if (self->asking == batch)
        self->asking = NULL;
    if (self->split_batch == batch)
        self->split_batch = NULL;
    for (size_t i = 0; i < batch->count; i++)
        if (batch->slots[i] && batch->slots[i]->batch == batch)
            batch->slots[i]->batch = NULL;
    free (batch->slots);
    free (batch);
}

//  Ends every task of a batch without the broker, and frees the batch.
static void
s_batch_fail (drover_map_t *self, s_batch_t *batch, int code,
              const char *reason)
{
    //  Failed inputs of split chunks make room for others: not in this one
    if (self->split_batch == batch)
        self->split_batch = NULL;
    for (size_t i = 0; i < batch->count; i++) {
        s_slot_t *slot = batch->slots[i];
        if (!slot)
            continue;
        if (batch->again) //  its result must not come as well
            drover_client_unwatch (self->client, &slot->id, 1);
        s_slot_fail (self, slot, code, reason);
    }
    s_batch_destroy (self, batch);
}

//  Ends a batch of tasks being cancelled: a new one's tasks fail here, an
//  `again` one's wait for their results (drover_map_cancel cancels them
//  by id).
static void
s_batch_cancel (drover_map_t *self, s_batch_t *batch, const char *reason)
{
    if (batch->again)
        s_batch_destroy (self, batch);
    else
        s_batch_fail (self, batch, DROVER_ECANCELLED, reason);
}

//  Waits a backoff, then sends the batch again.
static void
s_batch_later (drover_map_t *self, s_batch_t *batch)
{
    uint32_t wait = self->backoff_ms + s_random (self) % (self->backoff_ms + 1);
    batch->ref = 0;
    batch->retry_at = zclock_mono () + wait;
    self->backoff_ms *= 2;
    if (self->backoff_ms > MAP_BACKOFF_MAX_MS)
        self->backoff_ms = MAP_BACKOFF_MAX_MS;
}

static bool s_split_start (drover_map_t *self, s_slot_t *slot,
                           drover_result_t *result);

static void
s_on_result (void *arg, drover_result_t *result)
{
    s_slot_t *slot = (s_slot_t *)arg;
    drover_map_t *self = slot->map;
    if (slot->result) { //  cannot happen: the client unwatches on delivery
        drover_result_destroy (&result);
        return;
    }
    uint32_t items = slot->parent ? 1 : slot->items;
    if (self->chunk_auto && items && result->code == 0) {
        int64_t input_ns = (int64_t)(result->elapsed_us * 1000 / items);
        if (self->input_ns < 0)
            self->input_ns = input_ns;
        else
            self->input_ns += (input_ns - self->input_ns) / 4;
    }
    //  A chunk whose child crashed or passed a limit: which input did it?
    //  Each runs again alone (SPEC.md 7.7)
    if (slot->items > 1 && !slot->parent && !self->cancelled && slot->payload
        && (result->code == DROVER_ECRASHED || result->code == DROVER_ETIMELIMIT
            || result->code == DROVER_EMEMLIMIT)
        && s_split_start (self, slot, result))
        return;
    //  A cancelled task is no outcome of its input: a re-run runs it. The
    //  inputs of a split chunk are logged together, as the chunk's result
    if (self->job && !slot->parent && result->code != DROVER_ECANCELLED
        && drover_job_log_result (self->job, result, &slot->log_seq))
        s_stop (self, DROVER_ESTORAGE, "%s", drover_job_error (self->job));
    s_slot_done (self, slot, result);
}

//  Logs the ids the broker gave new tasks.
static void
s_log_submitted (drover_map_t *self, s_slot_t **slots, size_t count)
{
    if (!self->job || count == 0)
        return;
    //  Not the inputs of split chunks: the log knows only the chunk
    size_t logged = 0;
    for (size_t i = 0; i < count; i++) {
        if (slots[i]->parent)
            continue;
        self->indexes[logged] = slots[i]->index;
        self->ids[logged] = slots[i]->id;
        self->digests[logged++] = slots[i]->digest;
    }
    if (logged
        && drover_job_log_submitted (self->job, self->indexes, self->ids,
                                     self->digests, logged))
        s_stop (self, DROVER_ESTORAGE, "%s", drover_job_error (self->job));
}

//  The broker took back tasks submitted again: normally under their ids
//  (it deduplicates). A broker that gave other ids ignored them (it does
//  not implement SPEC.md 7.6): the tasks wait for the new ids' results.
static void
s_on_submitted_again (drover_map_t *self, s_batch_t *batch, drover_msg_t *reply)
{
    for (size_t i = 0; i < batch->count && !self->error; i++) {
        s_slot_t *slot = batch->slots[i];
        if (!slot || reply->ids[i] == slot->id)
            continue; //  its result came meanwhile, or the id was kept
        drover_client_unwatch (self->client, &slot->id, 1);
        slot->id = reply->ids[i];
        s_log_submitted (self, &slot, 1);
        void *arg = slot;
        int rc = drover_client_watch (self->client, &slot->id, 1, true,
                                      s_on_result, &arg);
        if (rc == DROVER_EINVAL)
            s_stop (self, DROVER_EPROTO,
                    "the broker gave task ids that are in use: %s",
                    drover_client_reason (self->client));
        else if (rc)
            s_stop (self, rc, "cannot watch results: %s",
                    drover_client_reason (self->client));
    }
    s_batch_destroy (self, batch);
}

static void
s_on_submitted (void *arg, int code, const char *reason,
                drover_packet_t **reply_p)
{
    s_batch_t *batch = (s_batch_t *)arg;
    drover_map_t *self = batch->map;
    batch->ref = 0;
    if (code == 0) {
        drover_msg_t *reply = drover_packet_msg (*reply_p);
        if (reply->id_count != batch->count) {
            s_stop (self, DROVER_EPROTO,
                    "the broker gave %zu task ids for %zu tasks",
                    reply->id_count, batch->count);
            s_batch_destroy (self, batch);
            return;
        }
        self->backoff_ms = MAP_BACKOFF_MIN_MS;
        if (batch->again) {
            s_on_submitted_again (self, batch, reply);
            return;
        }
        for (size_t i = 0; i < batch->count; i++)
            batch->slots[i]->id = reply->ids[i];
        s_log_submitted (self, batch->slots, batch->count);
        for (size_t i = 0; i < batch->count; i++) {
            s_slot_t *slot = batch->slots[i];
            self->ids[i] = slot->id;
            self->args[i] = slot;
        }
        int rc = drover_client_watch (self->client, self->ids, batch->count,
                                      true, s_on_result, self->args);
        if (rc == DROVER_EINVAL) //  ids in use: their results would mix
            s_stop (self, DROVER_EPROTO,
                    "the broker gave task ids that are in use: %s",
                    drover_client_reason (self->client));
        else if (rc)
            s_stop (self, rc, "cannot watch results: %s",
                    drover_client_reason (self->client));
        s_batch_destroy (self, batch);
    }
    else if ((code == DROVER_EFULL || code == DROVER_ESTALE
              || code == DROVER_EIO)
             && self->cancelled)
        s_batch_cancel (self, batch, "cancelled before it was submitted");
    else if (code == DROVER_EFULL || code == DROVER_ESTALE
             || code == DROVER_EIO)
        //  Backpressure, or the broker forgot our session or restarted
        //  (SPEC.md 7.6): again, later
        s_batch_later (self, batch);
    else if (code == DROVER_EPROTO || code == DROVER_ECONNECT
             || code == DROVER_ESHUTDOWN || code == DROVER_ETIMEDOUT)
        s_stop (self, code, "%s", reason ? reason : drover_strerror (code));
    else {
        //  The broker refused these tasks for good (bad handler name,
        //  payload too large...): each of them failed
        char text[600];
        snprintf (text, sizeof text, "the broker refused the task: %s",
                  reason ? reason : drover_strerror (code));
        s_batch_fail (self, batch, code, text);
    }
}

//  --------------------------------------------------------------------------
//  Tasks of the job log that have an id and no result

//  A new batch, in the map's list, to be sent at the next look.
static s_batch_t *
s_batch_due (drover_map_t *self, bool again, int ask)
{
    s_batch_t *batch = s_batch_new (self);
    if (!batch) {
        s_stop (self, DROVER_ENOMEM, "out of memory");
        return NULL;
    }
    batch->again = again;
    batch->ask = ask;
    batch->retry_at = zclock_mono ();
    batch->next = self->batches;
    self->batches = batch;
    return batch;
}

//  Moves a slot from the batch it is in to another.
static void
s_batch_move (s_slot_t *slot, s_batch_t *target)
{
    s_slot_detach (slot);
    target->slots[target->count++] = slot;
    slot->batch = target;
}

//  What the broker or the sink said of logged tasks: a task either holds
//  is watched; a cancelled one runs as a new task; one the broker does
//  not know, or keeps as a dead letter, is asked about at the sink; one
//  neither knows is submitted again under its id, and watched; a dead
//  letter the sink does not know runs as a new task (its result was
//  delivered to a run that died before it logged it, and released; the
//  broker would take its id for the dead letter's). A chunk whose outcome
//  was not logged because it was being split (SPEC.md 7.7) is such a dead
//  letter.
static void
s_on_status (void *arg, int code, const char *reason, drover_packet_t **reply_p)
{
    s_batch_t *batch = (s_batch_t *)arg;
    drover_map_t *self = batch->map;
    batch->ref = 0;
    if (self->cancelled) {
        s_batch_fail (self, batch, DROVER_ECANCELLED,
                      "cancelled before it was resumed");
        return;
    }
    if (code == DROVER_EFULL || code == DROVER_ESTALE || code == DROVER_EIO
        || code == DROVER_ECONNECT) {
        s_batch_later (self, batch);
        return;
    }
    if (code == DROVER_EPROTO) {
        s_stop (self, code, "%s", reason ? reason : drover_strerror (code));
        return;
    }
    //  A peer that refuses STATUS knows nothing we can use
    drover_msg_t *reply = code == 0 ? drover_packet_msg (*reply_p) : NULL;
    if (reply && reply->task_count != batch->count) {
        s_stop (self, DROVER_EPROTO, "the %s gave %zu states for %zu tasks",
                batch->ask == ASK_SINK ? "sink" : "broker", reply->task_count,
                batch->count);
        return;
    }
    s_batch_t *sink = NULL, *again = NULL, *renew = NULL;
    size_t watched = 0;
    for (size_t i = 0; i < batch->count && !self->error; i++) {
        s_slot_t *slot = batch->slots[i];
        if (!slot)
            continue;
        const drover_task_t *item =
            reply && reply->tasks[i].id == slot->id ? &reply->tasks[i] : NULL;
        int state = item ? (int)item->state : DROVER_STATE_UNKNOWN;
        //  Cancelled (a killed run's Ctrl-C), or being reported so
        if (state == DROVER_STATE_CANCELLED
            || (state == DROVER_STATE_REPORTING
                && item->code == DROVER_ECANCELLED)) {
            if (!renew && !(renew = s_batch_due (self, false, 0)))
                return;
            slot->id = 0;
            s_batch_move (slot, renew);
        }
        else if ((state == DROVER_STATE_UNKNOWN || state == DROVER_STATE_FAILED)
                 && batch->ask == ASK_BROKER) {
            if (!sink && !(sink = s_batch_due (self, false, ASK_SINK)))
                return;
            slot->dead = state == DROVER_STATE_FAILED;
            s_batch_move (slot, sink);
        }
        else if (state == DROVER_STATE_UNKNOWN && slot->dead) {
            if (!renew && !(renew = s_batch_due (self, false, 0)))
                return;
            slot->id = 0;
            s_batch_move (slot, renew);
        }
        else {
            //  Held by the broker or the sink, or by neither (then
            //  submitted again): its result comes by WATCH
            self->ids[watched] = slot->id;
            self->args[watched++] = slot;
            if (state == DROVER_STATE_UNKNOWN) {
                if (!again && !(again = s_batch_due (self, true, 0)))
                    return;
                s_batch_move (slot, again);
                self->resubmitted++;
            }
            else {
                s_slot_detach (slot);
                self->found++;
            }
        }
    }
    if (watched && !self->error) {
        int rc = drover_client_watch (self->client, self->ids, watched, true,
                                      s_on_result, self->args);
        if (rc)
            s_stop (self, rc == DROVER_EINVAL ? DROVER_EPROTO : rc,
                    "cannot watch the job's tasks: %s",
                    drover_client_reason (self->client));
    }
    s_batch_destroy (self, batch);
}

//  Asks the broker (or the sink) the state of a batch of logged tasks.
static void
s_ask_send (drover_map_t *self, s_batch_t *batch)
{
    for (size_t i = 0; i < batch->count; i++)
        self->ask_ids[i] = batch->slots[i]->id;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_STATUS);
    msg.ids = self->ask_ids;
    msg.id_count = batch->count;
    batch->retry_at = 0;
    int rc = drover_client_request (self->client, batch->ask == ASK_SINK, &msg,
                                    NULL, s_on_status, batch, &batch->ref);
    if (rc == 0)
        batch->sent_at = zclock_mono ();
    else if (rc == DROVER_EIO || rc == DROVER_ECONNECT)
        s_batch_later (self, batch); //  no sink known yet, or a full queue
    else
        s_stop (self, rc, "%s", drover_client_reason (self->client));
}

//  Sends a batch (again). Keeps it in the map's list until its reply.
static void
s_batch_send (drover_map_t *self, s_batch_t *batch)
{
    if (self->split_batch == batch)
        self->split_batch = NULL;
    if (self->filling == batch) {
        self->filling = NULL;
        batch->next = self->batches;
        self->batches = batch;
    }
    //  Tasks whose results came while they waited are not sent again
    size_t kept = 0;
    for (size_t i = 0; i < batch->count; i++)
        if (batch->slots[i])
            batch->slots[kept++] = batch->slots[i];
    batch->count = kept;
    if (kept == 0) {
        s_batch_destroy (self, batch);
        return;
    }
    if (batch->ask) {
        s_ask_send (self, batch);
        return;
    }
    for (size_t i = 0; i < batch->count; i++) {
        s_slot_t *slot = batch->slots[i];
        self->tasks[i] = (drover_task_t){.id = batch->again ? slot->id : 0,
                                         .handler = self->handler,
                                         .items = slot->items};
        drover_task_options_apply (&self->options, &self->tasks[i]);
        self->tasks[i].queue = self->queue;
        self->frames[i] = slot->payload;
    }
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.tasks = self->tasks;
    msg.task_count = batch->count;
    batch->retry_at = 0;
    int rc = drover_client_request (self->client, false, &msg, self->frames,
                                    s_on_submitted, batch, &batch->ref);
    if (rc == 0)
        batch->sent_at = zclock_mono ();
    else if (rc == DROVER_EIO)
        s_batch_later (self, batch);
    else if (rc == DROVER_EINVAL || rc == DROVER_ETOOBIG)
        s_batch_fail (self, batch, rc, drover_client_reason (self->client));
    else
        s_stop (self, rc, "%s", drover_client_reason (self->client));
}

//  Sends the batches whose backoff is over; stops the map when the broker
//  leaves a SUBMIT unanswered too long. Returns the next time to look, or
//  -1. Sending may run callbacks that free batches, so each send starts
//  the walk over.
static int64_t
s_batches_check (drover_map_t *self)
{
    while (!self->error) {
        int64_t now = zclock_mono ();
        int64_t next = -1;
        s_batch_t *due = NULL;
        for (s_batch_t *batch = self->batches; batch && !due;
             batch = batch->next) {
            int64_t when = -1;
            if (batch->ref && self->submit_timeout_ms >= 0)
                when = batch->sent_at + self->submit_timeout_ms;
            else if (!batch->ref && batch->retry_at)
                when = batch->retry_at;
            if (when < 0)
                continue;
            if (now < when) {
                if (next < 0 || when < next)
                    next = when;
            }
            else if (batch->ref) {
                s_stop (self, DROVER_ECONNECT,
                        "the broker did not accept or refuse %zu tasks "
                        "within %d ms",
                        batch->count, self->submit_timeout_ms);
                return -1;
            }
            else
                due = batch;
        }
        if (!due)
            return next;
        s_batch_send (self, due);
    }
    return -1;
}

//  --------------------------------------------------------------------------
//  Split chunks

static void
s_split_free (s_split_t *split)
{
    if (!split)
        return;
    zframe_destroy (&split->chunk);
    drover_result_destroy (&split->failure);
    for (uint32_t i = 0; split->results && i < split->items; i++)
        drover_result_destroy (&split->results[i]);
    free (split->results);
    free (split);
}

//  Logs the outcomes of a split chunk's inputs as the chunk's result, as
//  a node would have sent it had each input failed alone: a re-run of the
//  job finds the chunk done. Not when an input was cancelled (a re-run
//  runs the chunk again), nor when the outcomes are too large for one
//  payload (the same).
static void
s_split_log (drover_map_t *self, s_slot_t *chunk)
{
    s_split_t *split = chunk->split;
    drover_chunk_writer_t writer;
    drover_chunk_writer_init (&writer, DROVER_MAX_PAYLOAD);
    for (uint32_t i = 0; i < split->items; i++) {
        const drover_result_t *result = split->results[i];
        if (!result || result->code == DROVER_ECANCELLED) {
            drover_chunk_writer_reset (&writer);
            return;
        }
        if (result->code == 0)
            drover_chunk_add (&writer, result->payload, result->payload_size);
        else
            drover_chunk_add_failure (&writer, result->code,
                                      result->reason
                                          ? result->reason
                                          : drover_strerror (result->code));
    }
    uint8_t *data = NULL;
    size_t size = 0;
    int rc = drover_chunk_finish (&writer, &data, &size);
    if (rc == DROVER_ENOMEM)
        s_stop (self, rc, "out of memory");
    if (rc)
        return;
    const drover_result_t *failure = split->failure;
    drover_result_t logged = {.id = chunk->id,
                              .attempt = failure->attempt,
                              .node = failure->node,
                              .elapsed_us = failure->elapsed_us,
                              .cpu_us = failure->cpu_us,
                              .payload = data,
                              .payload_size = size};
    if (drover_job_log_result (self->job, &logged, &chunk->log_seq))
        s_stop (self, DROVER_ESTORAGE, "%s", drover_job_error (self->job));
    free (data);
}

//  Every input of a split chunk has its outcome: the chunk is done.
static void
s_split_end (drover_map_t *self, s_slot_t *chunk)
{
    s_split_t *split = chunk->split;
    if (self->job && !self->error)
        s_split_log (self, chunk);
    drover_result_t *failure = split->failure;
    split->failure = NULL;
    s_slot_done (self, chunk, failure);
}

//  Takes the first chunk off the list of those with inputs to send.
static void
s_split_pop (drover_map_t *self)
{
    s_split_t *split = self->split_head->split;
    self->split_head = split->next;
    if (!self->split_head)
        self->split_tail = NULL;
    split->next = NULL;
    zframe_destroy (&split->chunk); //  the reader is done with it
}

//  Makes tasks of the inputs of split chunks, in the order the chunks
//  failed, while input slots are free; they go in batches like any task.
//  A cancelled map fails the inputs not sent yet instead.
static void
s_split_feed (drover_map_t *self)
{
    while (self->split_head && self->cancelled) {
        s_slot_t *chunk = self->split_head;
        s_split_t *split = chunk->split;
        s_split_pop (self);
        for (; split->sent < split->items; split->sent++, split->done++) {
            split->results[split->sent] = drover_result_new_local (
                0, DROVER_ECANCELLED, "cancelled before it was submitted");
            if (!split->results[split->sent])
                s_stop (self, DROVER_ENOMEM, "out of memory");
        }
        if (split->done == split->items)
            s_split_end (self, chunk);
    }
    while (self->split_head && self->free_inputs && !self->error) {
        s_slot_t *chunk = self->split_head;
        s_split_t *split = chunk->split;
        const void *data = NULL;
        size_t size = 0;
        if (drover_chunk_next_input (&split->reader, &data, &size) != 1) {
            //  Cannot happen: the map wrote the chunk
            s_stop (self, DROVER_EPROTO, "chunk %llu cannot be read back",
                    (unsigned long long)chunk->id);
            return;
        }
        if (!self->split_batch
            && !(self->split_batch = s_batch_due (self, false, 0)))
            return;
        s_slot_t *input = self->free_inputs;
        self->free_inputs = input->next_free;
        *input = (s_slot_t){.map = self,
                            .index = chunk->index,
                            .first_item = chunk->first_item + split->sent,
                            .parent = chunk,
                            .item = split->sent};
        input->payload = zframe_new (size ? data : NULL, size);
        if (!input->payload) {
            input->map = NULL;
            input->next_free = self->free_inputs;
            self->free_inputs = input;
            s_stop (self, DROVER_ENOMEM, "out of memory");
            return;
        }
        self->inputs_busy++;
        if (++split->sent == split->items)
            s_split_pop (self);
        s_batch_t *batch = self->split_batch;
        batch->slots[batch->count++] = input;
        input->batch = batch;
        if (batch->count == self->max_batch)
            self->split_batch = NULL; //  full: the next goes in a new one
    }
}

//  Starts running a failed chunk's inputs one by one; takes the result.
//  Returns false, having changed nothing, when out of memory (then the
//  chunk's failure is each input's outcome, as without a split).
static bool
s_split_start (drover_map_t *self, s_slot_t *slot, drover_result_t *result)
{
    if (!self->inputs_pool) {
        self->inputs_pool =
            (s_slot_t *)calloc (self->window, sizeof (s_slot_t));
        if (!self->inputs_pool)
            return false;
        for (size_t i = self->window; i-- > 0;) {
            self->inputs_pool[i].next_free = self->free_inputs;
            self->free_inputs = &self->inputs_pool[i];
        }
    }
    s_split_t *split = (s_split_t *)calloc (1, sizeof *split);
    if (split)
        split->results =
            (drover_result_t **)calloc (slot->items, sizeof (void *));
    if (!split || !split->results
        || drover_chunk_open (&split->reader, zframe_data (slot->payload),
                              zframe_size (slot->payload), slot->items)) {
        s_split_free (split);
        return false;
    }
    split->items = slot->items;
    split->failure = result;
    split->chunk = slot->payload;
    slot->payload = NULL;
    slot->split = split;
    //  Out of a batch that would submit the chunk again
    s_slot_detach (slot);
    if (self->split_tail)
        self->split_tail->split->next = slot;
    else
        self->split_head = slot;
    self->split_tail = slot;
    s_split_feed (self);
    return true;
}

//  An input of a split chunk has its outcome: its slot is free again.
static void
s_split_input_done (drover_map_t *self, s_slot_t *input,
                    drover_result_t *result)
{
    s_slot_t *chunk = input->parent;
    s_split_t *split = chunk->split;
    s_slot_detach (input);
    assert (!split->results[input->item]);
    split->results[input->item] = result;
    split->done++;
    zframe_destroy (&input->payload);
    *input = (s_slot_t){.next_free = self->free_inputs};
    self->free_inputs = input;
    self->inputs_busy--;
    if (split->done == split->items)
        s_split_end (self, chunk);
    s_split_feed (self);
}

//  Hands back the results of a split chunk's inputs, pending in order,
//  like a chunk's, and gives back the first; takes the chunk's failure.
static drover_result_t *
s_split_hand_back (drover_map_t *self, s_split_t *split,
                   drover_result_t *failure)
{
    assert (self->pending_at == self->pending_count);
    free (self->pending);
    self->pending = split->results;
    self->pending_count = split->items;
    self->pending_at = 0;
    split->results = NULL;
    for (uint32_t i = 0; i < split->items; i++)
        if (self->pending[i])
            self->pending[i]->index = failure->index + i;
        else
            s_stop (self, DROVER_ENOMEM, "out of memory");
    s_split_free (split);
    drover_result_destroy (&failure);
    if (self->error)
        return NULL;
    return s_pending_next (self);
}

//  --------------------------------------------------------------------------
//  Inputs

//  Asks the job log about an input just read into slot. Returns what the
//  log knows of it (a logged result is the slot's already), or -1 when
//  that stopped the map.
static int
s_job_lookup (drover_map_t *self, s_slot_t *slot, const drover_payload_t *input)
{
    slot->digest = drover_job_digest (input->data, input->size);
    drover_result_t *result = NULL;
    uint64_t id = 0;
    int rc =
        drover_job_lookup (self->job, slot->index, slot->digest, &id, &result);
    if (rc < 0) {
        s_stop (self, rc, "%s", drover_job_error (self->job));
        return -1;
    }
    slot->id = id;
    if (rc == DROVER_JOB_DONE) {
        s_slot_done (self, slot, result);
        self->from_log += slot->items ? slot->items : 1; //  inputs
    }
    return rc;
}

//  Sends a batch that was being filled (filling or asking).
static void
s_send_filled (drover_map_t *self, s_batch_t **batch_p)
{
    s_batch_t *batch = *batch_p;
    *batch_p = NULL;
    batch->next = self->batches;
    self->batches = batch;
    s_batch_send (self, batch);
}

//  Tasks the SUBMIT being filled carries at most: max_batch, but no more
//  than the map has in flight besides it (and at least MAP_FIRST_BATCH),
//  so that the first tasks of a map, or of one that went idle, reach the
//  nodes after a small SUBMIT, not after one of the whole window (which
//  the broker takes a millisecond or more to queue); from there the
//  batches double.
static size_t
s_batch_limit (drover_map_t *self, const s_batch_t *batch)
{
    size_t before = s_in_flight (self) - batch->count;
    size_t limit = before > MAP_FIRST_BATCH ? before : MAP_FIRST_BATCH;
    return limit < self->max_batch ? limit : self->max_batch;
}

//  Gives a new slot its input (one input, or a finished chunk): asks the
//  job log about it, then puts it in the batch to submit (or to ask the
//  broker about). Returns false when the map stopped.
static bool
s_slot_take (drover_map_t *self, s_slot_t *slot, const drover_payload_t *input)
{
    int logged = self->job ? s_job_lookup (self, slot, input) : DROVER_JOB_NEW;
    if (logged < 0)
        return false;
    if (logged == DROVER_JOB_DONE)
        return true;
    if (input->size > self->max_payload) {
        char text[160];
        snprintf (text, sizeof text,
                  "the input has %zu octets; the cluster accepts at "
                  "most %llu",
                  input->size, (unsigned long long)self->max_payload);
        s_slot_fail (self, slot, DROVER_ETOOBIG, text);
        return true;
    }
    slot->payload = zframe_new (input->size ? input->data : NULL, input->size);
    //  A task of the job log is asked about first; a new one submitted
    s_batch_t **target =
        logged == DROVER_JOB_PENDING ? &self->asking : &self->filling;
    if (!*target)
        *target = s_batch_new (self);
    if (!slot->payload || !*target) {
        s_stop (self, DROVER_ENOMEM, "out of memory");
        return false;
    }
    if (logged == DROVER_JOB_PENDING)
        (*target)->ask = ASK_BROKER;
    (*target)->slots[(*target)->count++] = slot;
    slot->batch = *target;
    if ((*target)->count >= (logged == DROVER_JOB_PENDING
                                 ? self->max_batch
                                 : s_batch_limit (self, *target)))
        s_send_filled (self, target);
    return true;
}

//  Inputs the next chunk takes: the fixed size, or in automatic mode one
//  until results came, then about MAP_CHUNK_TARGET_NS of work.
static uint32_t
s_chunk_items (drover_map_t *self)
{
    if (!self->chunk_auto)
        return self->chunksize;
    if (self->input_ns < 0)
        return 1;
    int64_t items = MAP_CHUNK_TARGET_NS / (self->input_ns + 1);
    return items < 1                           ? 1
           : items > DROVER_MAP_AUTO_MAX_ITEMS ? DROVER_MAP_AUTO_MAX_ITEMS
                                               : (uint32_t)items;
}

//  Octets a chunk may have.
static size_t
s_chunk_octets (drover_map_t *self)
{
    if (self->chunk_auto && self->max_payload > MAP_AUTO_CHUNK_OCTETS)
        return MAP_AUTO_CHUNK_OCTETS;
    return (size_t)self->max_payload;
}

//  Makes a slot of the chunk being filled. Returns false when the map
//  stopped.
static bool
s_chunk_close (drover_map_t *self)
{
    uint32_t items = self->chunk.count;
    uint8_t *data;
    size_t size;
    if (drover_chunk_finish (&self->chunk, &data, &size)) {
        s_stop (self, DROVER_ENOMEM, "out of memory");
        return false;
    }
    s_slot_t *slot = s_slot_new (self);
    slot->first_item = self->chunk_first;
    slot->items = items;
    drover_payload_t input = {data, size};
    bool taken = s_slot_take (self, slot, &input);
    free (data);
    return taken;
}

//  Puts an input into the chunk being filled, closing chunks as they fill;
//  an input too large for any chunk becomes a task of its own (which
//  fails). Returns false when the map stopped.
static bool
s_chunk_add (drover_map_t *self, const drover_payload_t *input)
{
    size_t limit = s_chunk_octets (self);
    if (self->chunk.count
        && drover_chunk_size_with (&self->chunk, input->size) > limit
        && !s_chunk_close (self))
        return false;
    drover_chunk_writer_t empty;
    drover_chunk_writer_init (&empty, 0);
    if (drover_chunk_size_with (&empty, input->size) > self->max_payload) {
        if (self->chunk.count && !s_chunk_close (self))
            return false;
        s_slot_t *slot = s_slot_new (self);
        slot->first_item = self->items_in - 1;
        slot->items = 1;
        return s_slot_take (self, slot, input);
    }
    if (self->chunk.count == 0)
        self->chunk_first = self->items_in - 1;
    if (drover_chunk_add (&self->chunk, input->data, input->size)) {
        s_stop (self, DROVER_ENOMEM, "out of memory");
        return false;
    }
    if (self->chunk.count >= s_chunk_items (self) || self->chunk.size >= limit)
        return s_chunk_close (self);
    return true;
}

//  Reads inputs while the window has room, into batches, and sends them.
static void
s_read_inputs (drover_map_t *self)
{
    //  Refill only when a good part of the window is free, so batches
    //  stay large; an empty window is always refilled.
    size_t chunk =
        self->window / 4 < self->max_batch ? self->window / 4 : self->max_batch;
    if (chunk == 0)
        chunk = 1;
    if ((s_in_flight (self) || self->inputs_busy) && s_room (self) < chunk)
        return;
    if (self->input_later && self->input_fd < 0
        && zclock_mono () >= self->input_retry_at)
        self->input_later = false;
    //  An input may take two slots in a chunked map: the chunk it closes
    //  and its own (one too large for any chunk)
    size_t room = self->chunksize ? 2 : 1;
    while (!self->input_ended && !self->input_later && !self->error
           && s_room (self) >= room) {
        drover_payload_t input = {NULL, 0};
        int rc = self->input_fn (self->input_arg, &input);
        if (rc == 0) {
            self->input_ended = true;
            if (self->chunk.count && !s_chunk_close (self))
                break;
            if (self->job && drover_job_check_end (self->job, self->inputs))
                s_stop (self, DROVER_EINVAL, "%s",
                        drover_job_error (self->job));
            break;
        }
        if (rc == DROVER_ETIMEDOUT) {
            self->input_later = true;
            self->input_retry_at = zclock_mono () + MAP_INPUT_RETRY_MS;
            break;
        }
        if (rc != 1) {
            s_stop (self, rc < 0 ? rc : DROVER_EINVAL,
                    "reading input %llu failed: %s",
                    (unsigned long long)self->items_in,
                    rc < 0 ? drover_strerror (rc)
                           : "the input callback returned a bad value");
            break;
        }
        self->items_in++;
        if (self->chunksize) {
            if (!s_chunk_add (self, &input))
                break;
            continue;
        }
        s_slot_t *slot = s_slot_new (self);
        slot->first_item = self->items_in - 1;
        if (!s_slot_take (self, slot, &input))
            break;
    }
    //  Nothing more to read now: send what we have, a part-filled chunk
    //  too (a slow input must not hold back the inputs before it)
    if (self->chunk.count && !self->error && s_in_flight (self) < self->window
        && (self->input_ended || self->input_later))
        s_chunk_close (self);
    if (self->filling && self->filling->count && !self->error)
        s_batch_send (self, self->filling);
    if (self->asking && self->asking->count && !self->error)
        s_send_filled (self, &self->asking);
}

//  --------------------------------------------------------------------------
//  Broker restarts

//  The broker restarted and lost its tasks (SPEC.md 7.6): submits every
//  task that has an id and waits for its result again, under its id, with
//  its input (inputs of split chunks too). Tasks of a batch not yet
//  accepted are sent again by their batch (the restart failed its SUBMIT
//  with DROVER_ESTALE). A cancelled map has nothing to resubmit: its
//  waiting tasks end here, cancelled.
static void
s_resubmit (drover_map_t *self)
{
    self->restarts = drover_client_broker_restarts (self->client);
    s_batch_t *batch = NULL;
    size_t count = 0;
    //  The window's slots, then those of split chunks' inputs (a split
    //  chunk's own task is over)
    size_t slots = self->inputs_pool ? 2 * self->window : self->window;
    for (size_t i = 0; i < slots && !self->error; i++) {
        s_slot_t *slot = s_slot_at (self, i);
        if (slot->map != self || !slot->id || slot->result || slot->batch
            || slot->split)
            continue;
        if (self->cancelled) {
            drover_client_unwatch (self->client, &slot->id, 1);
            s_slot_fail (self, slot, DROVER_ECANCELLED,
                         "cancelled; the broker restarted before it "
                         "stored the outcome");
            continue;
        }
        if (!batch) {
            batch = s_batch_new (self);
            if (!batch) {
                s_stop (self, DROVER_ENOMEM, "out of memory");
                return;
            }
            batch->again = true;
            batch->next = self->batches;
            self->batches = batch;
        }
        assert (slot->payload);
        batch->slots[batch->count++] = slot;
        slot->batch = batch;
        count++;
        if (batch->count == self->max_batch) {
            s_batch_send (self, batch);
            batch = NULL;
        }
    }
    if (batch && !self->error)
        s_batch_send (self, batch);
    self->resubmitted += count;
}

//  --------------------------------------------------------------------------
//  Public API

drover_map_t *
drover_map_new (drover_client_t *client, const char *handler,
                const drover_map_options_t *options,
                drover_map_input_fn *input_fn, void *arg)
{
    assert (client);
    assert (input_fn);
    drover_map_options_t defaults = {.window = 0};
    if (!options)
        options = &defaults;
    if (!drover_name_valid (handler)
        || (options->task.queue && !drover_name_valid (options->task.queue))
        || !drover_retry_on_valid (options->task.retry_on)
        || drover_client_max_batch (client) == 0
        || (options->chunksize > DROVER_MAP_MAX_CHUNKSIZE
            && options->chunksize != DROVER_MAP_CHUNK_AUTO)
        || (options->chunksize == DROVER_MAP_CHUNK_AUTO && options->job))
        return NULL;
    drover_map_t *self = (drover_map_t *)calloc (1, sizeof *self);
    if (!self)
        return NULL;
    self->client = client;
    self->handler = strdup (handler);
    self->queue = options->task.queue ? strdup (options->task.queue) : NULL;
    self->options = options->task;
    self->options.queue = NULL;
    self->window = options->window ? options->window : MAP_DEFAULT_WINDOW;
    self->ordered = options->ordered;
    self->chunksize = options->chunksize > 1 ? options->chunksize : 0;
    self->chunk_auto = options->chunksize == DROVER_MAP_CHUNK_AUTO;
    self->input_ns = -1;
    if (self->chunksize && self->window < 2)
        self->window = 2; //  room for a chunk and an input too large for one
    self->max_batch = drover_client_max_batch (client);
    self->max_payload = drover_client_max_payload (client);
    int timeout = drover_client_timeout (client);
    self->submit_timeout_ms = timeout < 0 ? -1
                              : timeout < MAP_SUBMIT_TIMEOUT_MIN
                                  ? MAP_SUBMIT_TIMEOUT_MIN
                                  : timeout;
    self->input_fn = input_fn;
    self->input_arg = arg;
    self->input_fd = -1;
    self->restarts = drover_client_broker_restarts (client);
    self->backoff_ms = MAP_BACKOFF_MIN_MS;
    self->jitter = (uint64_t)zclock_time () ^ (uint64_t)(uintptr_t)self;
    if (!self->jitter)
        self->jitter = 1;
    self->slots = (s_slot_t *)calloc (self->window, sizeof (s_slot_t));
    self->order = (s_slot_t **)calloc (self->window, sizeof (void *));
    self->ready = (s_slot_t **)calloc (self->window, sizeof (void *));
    self->tasks =
        (drover_task_t *)calloc (self->max_batch, sizeof (drover_task_t));
    self->frames = (zframe_t **)calloc (self->max_batch, sizeof (void *));
    self->ids = (uint64_t *)calloc (self->max_batch, sizeof (uint64_t));
    self->args = (void **)calloc (self->max_batch, sizeof (void *));
    self->job = options->job;
    if (self->job) {
        self->ask_ids = (uint64_t *)calloc (self->max_batch, sizeof (uint64_t));
        self->indexes = (uint64_t *)calloc (self->max_batch, sizeof (uint64_t));
        self->digests = (uint64_t *)calloc (self->max_batch, sizeof (uint64_t));
    }
    if (!self->handler || (options->task.queue && !self->queue) || !self->slots
        || !self->order || !self->ready || !self->tasks || !self->frames
        || !self->ids || !self->args
        || (self->job
            && (!self->ask_ids || !self->indexes || !self->digests))) {
        drover_map_destroy (&self);
        return NULL;
    }
    for (size_t i = self->window; i-- > 0;) {
        self->slots[i].next_free = self->free_slots;
        self->free_slots = &self->slots[i];
    }
    return self;
}

void
drover_map_destroy (drover_map_t **self_p)
{
    assert (self_p);
    drover_map_t *self = *self_p;
    if (!self)
        return;
    //  No callback may reach a freed map
    while (self->batches) {
        if (self->batches->ref)
            drover_client_forget (self->client, self->batches->ref);
        s_batch_destroy (self, self->batches);
    }
    if (self->filling)
        s_batch_destroy (self, self->filling);
    if (self->asking)
        s_batch_destroy (self, self->asking);
    for (size_t i = 0; self->slots && i < self->window; i++) {
        s_slot_t *slot = &self->slots[i];
        if (slot->map != self)
            continue; //  never used
        if (slot->id && !slot->result && !slot->split)
            drover_client_unwatch (self->client, &slot->id, 1);
        zframe_destroy (&slot->payload);
        drover_result_destroy (&slot->result);
        s_split_free (slot->split);
    }
    for (size_t i = 0; self->inputs_pool && i < self->window; i++) {
        s_slot_t *slot = &self->inputs_pool[i];
        if (slot->map != self)
            continue; //  not in use
        if (slot->id)
            drover_client_unwatch (self->client, &slot->id, 1);
        zframe_destroy (&slot->payload);
    }
    free (self->inputs_pool);
    for (size_t i = self->pending_at; i < self->pending_count; i++)
        drover_result_destroy (&self->pending[i]);
    free (self->pending);
    drover_chunk_writer_reset (&self->chunk);
    free (self->handler);
    free (self->queue);
    free (self->slots);
    free (self->order);
    free (self->ready);
    free (self->tasks);
    free (self->frames);
    free (self->ids);
    free (self->args);
    free (self->ask_ids);
    free (self->indexes);
    free (self->digests);
    free (self);
    *self_p = NULL;
}

void
drover_map_set_input_fd (drover_map_t *self, int fd)
{
    assert (self);
    self->input_fd = fd;
}

//  The next pending result of a chunk's inputs, or NULL.
static drover_result_t *
s_pending_next (drover_map_t *self)
{
    if (self->pending_at == self->pending_count)
        return NULL;
    drover_result_t *result = self->pending[self->pending_at];
    self->pending[self->pending_at++] = NULL;
    self->items_out++;
    return result;
}

//  Splits a chunk's result into one result per input, pending in order,
//  and gives back the first; NULL when out of memory (the map stops). A
//  failed chunk fails each input with its code and reason; a result that
//  is no chunk result of that many inputs fails each with DROVER_EPROTO.
static drover_result_t *
s_unpack (drover_map_t *self, drover_result_t *chunk, uint32_t items)
{
    assert (self->pending_at == self->pending_count);
    free (self->pending);
    self->pending_count = self->pending_at = 0;
    self->pending = (drover_result_t **)calloc (items, sizeof (void *));
    if (!self->pending) {
        drover_result_destroy (&chunk);
        s_stop (self, DROVER_ENOMEM, "out of memory");
        return NULL;
    }
    drover_chunk_reader_t reader;
    bool valid = chunk->code < 0
                 || drover_chunk_open (&reader, chunk->payload,
                                       chunk->payload_size, items)
                        == 0;
    for (uint32_t i = 0; valid && i < items; i++) {
        int32_t code = chunk->code;
        const void *data = NULL;
        size_t size = 0;
        if (code == 0
            && drover_chunk_next_outcome (&reader, &code, &data, &size) != 1)
            valid = false;
        else
            self->pending[i] = drover_result_new_item (chunk, code, data, size);
        if (valid && !self->pending[i]) {
            s_stop (self, DROVER_ENOMEM, "out of memory");
            break;
        }
    }
    if (valid && chunk->code == 0
        && drover_chunk_next_outcome (&reader, NULL, NULL, NULL) != 0)
        valid = false;
    if (!valid) {
        //  Whatever came of the broken result is dropped
        char reason[160];
        snprintf (reason, sizeof reason,
                  "the result of chunk %llu is not a chunk result of %u "
                  "inputs",
                  (unsigned long long)chunk->id, (unsigned)items);
        for (uint32_t i = 0; i < items && !self->error; i++) {
            drover_result_destroy (&self->pending[i]);
            self->pending[i] = drover_result_new_item (chunk, DROVER_EPROTO,
                                                       reason, strlen (reason));
            if (!self->pending[i])
                s_stop (self, DROVER_ENOMEM, "out of memory");
        }
    }
    for (uint32_t i = 0; i < items; i++)
        if (self->pending[i])
            self->pending[i]->index = chunk->index + i;
    self->pending_count = items;
    drover_result_destroy (&chunk);
    if (self->error)
        return NULL;
    return s_pending_next (self);
}

//  Hands back the due slot's result, once its record in the job log is
//  on disk; NULL when the log cannot be written (the map stops).
static drover_result_t *
s_hand_back (drover_map_t *self, s_slot_t *slot)
{
    if (self->job && slot->log_seq
        && drover_job_sync_to (self->job, slot->log_seq)) {
        s_stop (self, DROVER_ESTORAGE, "%s", drover_job_error (self->job));
        return NULL;
    }
    if (!self->ordered) {
        self->ready_head = (self->ready_head + 1) % self->window;
        self->ready_count--;
    }
    drover_result_t *result = slot->result;
    slot->result = NULL;
    result->index = slot->first_item;
    result->id = slot->id;
    uint32_t items = slot->items;
    s_split_t *split = slot->split;
    slot->split = NULL;
    s_slot_free (self, slot);
    slot->map = NULL;
    self->outputs++;
    if (split)
        return s_split_hand_back (self, split, result);
    if (items)
        return s_unpack (self, result, items);
    self->items_out++;
    return result;
}

int
drover_map_next (drover_map_t *self, int timeout_ms, drover_result_t **result_p)
{
    assert (self);
    assert (result_p);
    *result_p = NULL;
    //  The inputs of a chunk come back without a look at the clock
    if (!self->error) {
        *result_p = s_pending_next (self);
        if (*result_p)
            return 0;
    }
    int64_t deadline = drover_client_deadline (timeout_ms);
    while (true) {
        if (self->error)
            return s_error (self);
        *result_p = s_pending_next (self);
        if (*result_p)
            return 0;
        if (drover_client_broker_restarts (self->client) != self->restarts)
            s_resubmit (self);
        s_slot_t *slot = s_slot_due (self);
        if (slot) {
            *result_p = s_hand_back (self, slot);
            if (!*result_p)
                continue;
            return 0;
        }
        if (self->input_ended && s_in_flight (self) == 0)
            return 0; //  every input had its result
        if (!self->cancelled)
            s_read_inputs (self);
        if (self->error || s_slot_due (self)
            || (self->input_ended && s_in_flight (self) == 0))
            continue;
        int64_t wake = s_batches_check (self);
        if (self->error)
            continue;
        if (self->input_later && self->input_fd < 0
            && (wake < 0 || self->input_retry_at < wake))
            wake = self->input_retry_at;
        if (deadline >= 0 && (wake < 0 || deadline < wake))
            wake = deadline;
        //  Wait for the input only while the window has room for it
        int fd = self->input_later && s_room (self) ? self->input_fd : -1;
        bool fd_ready = false;
        int rc = drover_client_pump (self->client, wake, fd, &fd_ready);
        if (fd_ready)
            self->input_later = false;
        //  What came is written now; synced when it is handed back
        if (self->job && !self->error && drover_job_flush (self->job))
            s_stop (self, DROVER_ESTORAGE, "%s", drover_job_error (self->job));
        if (rc == DROVER_ETIMEDOUT) {
            int64_t now = zclock_mono ();
            bool interrupted = wake < 0 || now < wake;
            if (interrupted || (deadline >= 0 && now >= deadline)) {
                slot = s_slot_due (self);
                if (slot && !self->error) {
                    *result_p = s_hand_back (self, slot);
                    if (*result_p)
                        return 0;
                }
                return self->error
                           ? s_error (self)
                           : drover_client_fail (self->client, DROVER_ETIMEDOUT,
                                                 "no result within %d ms",
                                                 timeout_ms);
            }
        }
        else if (rc)
            s_stop (self, rc, "%s", drover_client_reason (self->client));
    }
}

//  Ignores the reply to a CANCEL: the results tell the outcome.
static void
s_on_cancelled (void *arg, int code, const char *reason,
                drover_packet_t **reply_p)
{
    (void)code;
    (void)reason;
    (void)reply_p;
    size_t *pending = (size_t *)arg;
    (*pending)--;
}

int
drover_map_cancel (drover_map_t *self, int timeout_ms)
{
    assert (self);
    self->cancelled = true;
    self->input_ended = true;
    int64_t deadline = drover_client_deadline (timeout_ms);
    //  Inputs of split chunks not made tasks yet end here
    s_split_feed (self);
    //  Tasks not sent yet, or waiting to be sent again, end here
    if (self->filling)
        s_batch_fail (self, self->filling, DROVER_ECANCELLED,
                      "cancelled before it was submitted");
    if (self->asking)
        s_batch_fail (self, self->asking, DROVER_ECANCELLED,
                      "cancelled before it was resumed");
    s_batch_t *batch = self->batches;
    while (batch) {
        s_batch_t *following = batch->next;
        if (!batch->ref)
            s_batch_cancel (self, batch, "cancelled before it was submitted");
        batch = following;
    }
    //  Tasks being submitted get their ids first
    int rc = 0;
    while (self->batches && rc == 0)
        rc = drover_client_pump (self->client, deadline, -1, NULL);
    while (self->batches) {
        drover_client_forget (self->client, self->batches->ref);
        s_batch_cancel (self, self->batches,
                        "cancelled while it was being submitted");
    }
    //  Then the broker cancels the tasks that have ids and no result
    size_t pending = 0;
    size_t count = 0;
    size_t slots = self->inputs_pool ? 2 * self->window : self->window;
    uint64_t *refs =
        (uint64_t *)calloc (slots / self->max_batch + 2, sizeof (uint64_t));
    if (!refs)
        return drover_client_fail (self->client, DROVER_ENOMEM,
                                   "out of memory");
    size_t requests = 0;
    for (size_t i = 0; i <= slots; i++) {
        s_slot_t *slot = i < slots ? s_slot_at (self, i) : NULL;
        if (slot && slot->map == self && slot->id && !slot->result
            && !slot->split)
            self->ids[count++] = slot->id;
        if (count == self->max_batch || (!slot && count)) {
            drover_msg_t msg;
            drover_msg_init (&msg, DROVER_CANCEL);
            msg.ids = self->ids;
            msg.id_count = count;
            if (drover_client_request (self->client, false, &msg, NULL,
                                       s_on_cancelled, &pending,
                                       &refs[requests])
                == 0) {
                pending++;
                requests++;
            }
            count = 0;
        }
    }
    rc = 0;
    while (pending && rc == 0)
        rc = drover_client_pump (self->client, deadline, -1, NULL);
    for (size_t i = 0; i < requests; i++)
        drover_client_forget (self->client, refs[i]);
    free (refs);
    return pending ? drover_client_fail (self->client, DROVER_ETIMEDOUT,
                                         "the broker did not confirm the "
                                         "cancel within %d ms",
                                         timeout_ms)
                   : 0;
}

uint64_t
drover_map_inputs (drover_map_t *self)
{
    assert (self);
    return self->items_in;
}

uint64_t
drover_map_outputs (drover_map_t *self)
{
    assert (self);
    return self->items_out;
}

size_t
drover_map_in_flight (drover_map_t *self)
{
    assert (self);
    return s_in_flight (self);
}

uint64_t
drover_map_resubmitted (drover_map_t *self)
{
    assert (self);
    return self->resubmitted;
}

uint64_t
drover_map_from_log (drover_map_t *self)
{
    assert (self);
    return self->from_log;
}

uint64_t
drover_map_found (drover_map_t *self)
{
    assert (self);
    return self->found;
}
