/*  task_journal.c - the broker's durable task state (proto/JOURNAL.md,
    "Broker journal").

    Records are DTP messages: SUBMIT (tasks created, with their payloads:
    also the first record of a relocated task), STATUS_REPLY (leases, final
    outcomes, ends, withdrawals: one item per change), FAIL (failed or lost
    attempts, for the history and the attempt counts) and RETRY (tasks that
    left the dead-letter list). Consecutive SUBMIT items and consecutive
    STATUS_REPLY items without text share one record.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "task_journal.h"
#include "task_payload.h"

#include <czmq.h>

//  Octets a task's records cost beyond its payload, roughly: what the live
//  octets count for it.
#define S_TASK_OVERHEAD 160

//  Records of undecodable messages warned about, at most.
#define S_MAX_WARNINGS 10

//  Payload octets one SUBMIT record holds at most (records stay far below
//  the journal's 4 GiB limit, and a batch's copy stays small).
#define S_MAX_BATCH_OCTETS (64u << 20)

struct task_journal_t {
    drover_journal_t *journal;
    dispatcher_t *dispatcher;
    uint64_t segment_size;          //  the journal's segment size
    bool lost;                      //  a failed commit dropped records
    uint64_t live;                  //  octets of live tasks' records
    uint64_t compacted;             //  segments deleted by compaction
    drover_command_t batch_command; //  SUBMIT or STATUS_REPLY, or 0
    drover_task_t *batch;           //  its items (DROVER_MAX_BATCH)
    size_t batch_count;
    size_t batch_octets;           //  payload octets in the batch
    const char *submit_token;      //  the token of the SUBMIT being
                                   //  handled (task_journal_submit_begin)
    size_t submit_records;         //  SUBMIT records its tasks took
    task_journal_replay_t *replay; //  while replaying: what it found
    token_table_t *tokens;         //  SUBMIT tokens, filled by replay
};

//  A record that cannot be appended leaves the journal short of a change:
//  it is lost (acknowledgements are refused) until a checkpoint.
static void
s_append (task_journal_t *self, drover_msg_t *msg)
{
    int rc = drover_journal_append_msg (self->journal, msg);
    if (rc != 0) {
        zsys_error ("broker journal: cannot append %s: %s",
                    drover_command_name (msg->command),
                    drover_journal_error (self->journal));
        self->lost = true;
    }
}

static void
s_flush_batch (task_journal_t *self)
{
    if (self->batch_count == 0)
        return;
    drover_msg_t msg;
    drover_msg_init (&msg, self->batch_command);
    msg.tasks = self->batch;
    msg.task_count = self->batch_count;
    if (self->batch_command == DROVER_SUBMIT && self->submit_token)
        self->submit_records++;
    s_append (self, &msg);
    self->batch_count = 0;
    self->batch_command = 0;
    self->batch_octets = 0;
}

static void
s_batch_add (task_journal_t *self, drover_command_t command,
             const drover_task_t *item)
{
    if (self->batch_command != command || self->batch_count == DROVER_MAX_BATCH
        || self->batch_octets + item->payload.size > S_MAX_BATCH_OCTETS)
        s_flush_batch (self);
    self->batch_command = command;
    self->batch[self->batch_count++] = *item;
    self->batch_octets += item->payload.size;
}

static drover_task_t
s_submit_item (const dispatcher_task_t *task)
{
    task_payload_t *payload = (task_payload_t *)task->payload;
    return (drover_task_t){
        .id = task->id,
        .handler = dispatcher_task_handler (task),
        .queue = dispatcher_task_queue (task),
        .key = task->key,
        .timeout_ms = task->timeout_ms,
        .soft_timeout_ms = task->soft_timeout_ms,
        .max_attempts = task->max_attempts,
        .retry_delay_ms = task->retry_delay_ms,
        .retry_max_delay_ms = task->retry_max_delay_ms,
        .retry_on = task->retry_on,
        .items = task->items,
        .payload = payload ? (drover_bytes_t){task_payload_data (payload),
                                              task_payload_size (payload)}
                           : (drover_bytes_t){NULL, 0},
    };
}

static drover_task_t
s_failure_item (uint64_t id, const dispatcher_attempt_t *attempt)
{
    return (drover_task_t){
        .id = id,
        .attempt = attempt->attempt,
        .code = attempt->code,
        .reason = attempt->reason,
        .node = attempt->node,
        .elapsed_us = attempt->elapsed_us,
        .cpu_us = attempt->cpu_us,
        .signal = attempt->signal,
        .exit_status = attempt->exit_status,
        .max_rss_kb = attempt->max_rss_kb,
    };
}

static drover_state_t
s_end_state (int32_t code)
{
    return code == 0                   ? DROVER_STATE_DONE
           : code == DROVER_ECANCELLED ? DROVER_STATE_CANCELLED
                                       : DROVER_STATE_FAILED;
}

//  A record of its own: the batch goes first, to keep the order.
static void
s_append_one (task_journal_t *self, drover_command_t command,
              drover_task_t *item)
{
    s_flush_batch (self);
    drover_msg_t msg;
    drover_msg_init (&msg, command);
    msg.tasks = item;
    msg.task_count = 1;
    s_append (self, &msg);
}

static void
s_append_report (task_journal_t *self, const dispatcher_task_t *task)
{
    drover_task_t item = {.id = task->id,
                          .state = DROVER_STATE_REPORTING,
                          .attempt = task->attempt,
                          .code = task->code,
                          .reason = dispatcher_task_reason (task)};
    s_append_one (self, DROVER_STATUS_REPLY, &item);
}

static void
s_home (task_journal_t *self, dispatcher_task_t *task)
{
    task->journal_home = drover_journal_segment (self->journal);
}

static void
s_observe (void *arg, dispatcher_event_t event, dispatcher_task_t *task,
           int32_t code)
{
    task_journal_t *self = (task_journal_t *)arg;
    if (event == DISPATCHER_EVENT_FREE) {
        s_flush_batch (self); //  the batch may point at its payload
        self->live -= task->journal_bytes;
        task->journal_bytes = 0;
        return;
    }
    if (event == DISPATCHER_EVENT_SUBMIT) {
        task_payload_t *payload = (task_payload_t *)task->payload;
        task->journal_bytes =
            (payload ? task_payload_size (payload) : 0) + S_TASK_OVERHEAD;
        self->live += task->journal_bytes;
        s_home (self, task);
    }
    if (self->lost)
        return; //  the checkpoint that mends the journal writes it all
    drover_task_t item = {.id = task->id, .attempt = task->attempt};
    switch (event) {
        case DISPATCHER_EVENT_SUBMIT:
            item = s_submit_item (task);
            s_batch_add (self, DROVER_SUBMIT, &item);
            break;
        case DISPATCHER_EVENT_LEASE:
            item.state = DROVER_STATE_LEASED;
            s_batch_add (self, DROVER_STATUS_REPLY, &item);
            break;
        case DISPATCHER_EVENT_END:
            item.state = s_end_state (code);
            item.code = code;
            s_batch_add (self, DROVER_STATUS_REPLY, &item);
            break;
        case DISPATCHER_EVENT_WITHDRAW:
            item.state = DROVER_STATE_UNKNOWN;
            s_batch_add (self, DROVER_STATUS_REPLY, &item);
            break;
        case DISPATCHER_EVENT_FAILURE: {
            const dispatcher_history_t *history =
                dispatcher_task_history (task);
            size_t kept = dispatcher_history_size (history);
            assert (kept > 0);
            item = s_failure_item (task->id,
                                   dispatcher_history_get (history, kept - 1));
            s_append_one (self, DROVER_FAIL, &item);
            break;
        }
        case DISPATCHER_EVENT_REPORT: s_append_report (self, task); break;
        case DISPATCHER_EVENT_UNDEAD: {
            s_flush_batch (self);
            drover_msg_t msg;
            drover_msg_init (&msg, DROVER_RETRY);
            msg.ids = &task->id;
            msg.id_count = 1;
            s_append (self, &msg);
            break;
        }
        default: break;
    }
}

//  Writes a task's whole state at the head; it is homed there once that
//  is committed (s_rehome).
static void
s_snapshot (task_journal_t *self, dispatcher_task_t *task)
{
    drover_task_t item = s_submit_item (task);
    s_append_one (self, DROVER_SUBMIT, &item);
    const dispatcher_history_t *history = dispatcher_task_history (task);
    size_t kept = dispatcher_history_size (history);
    if (kept > 0) {
        drover_task_t items[DISPATCHER_HISTORY];
        for (size_t i = 0; i < kept; i++)
            items[i] =
                s_failure_item (task->id, dispatcher_history_get (history, i));
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_FAIL);
        msg.tasks = items;
        msg.task_count = kept;
        s_append (self, &msg);
    }
    //  A failed newest attempt is in the history; a lease is not
    if (task->attempt > 0 && !task->failed_attempt) {
        item = (drover_task_t){.id = task->id,
                               .attempt = task->attempt,
                               .state = DROVER_STATE_LEASED};
        s_append_one (self, DROVER_STATUS_REPLY, &item);
    }
    //  A claimed task is a lease whose result the sink is storing
    if (!task->claimed
        && (task->state == DROVER_STATE_REPORTING
            || task->state == DROVER_STATE_FAILED))
        s_append_report (self, task);
    if (task->state == DROVER_STATE_FAILED) {
        item = (drover_task_t){.id = task->id,
                               .attempt = task->attempt,
                               .state = DROVER_STATE_FAILED,
                               .code = task->code};
        s_append_one (self, DROVER_STATUS_REPLY, &item);
    }
}

//  After the commit of snapshots written while segment was current: the
//  tasks homed at or before oldest live there now (or later: a lower
//  bound is what deletion needs).
static void
s_rehome (task_journal_t *self, uint64_t oldest, uint64_t segment)
{
    for (dispatcher_task_t *task = dispatcher_all_first (self->dispatcher);
         task; task = dispatcher_all_next (self->dispatcher))
        if (task->journal_home <= oldest)
            task->journal_home = segment;
}

void
task_journal_submit_begin (task_journal_t *self, const char *token)
{
    s_flush_batch (self);
    self->submit_token = token;
    self->submit_records = 0;
}

void
task_journal_submit_end (task_journal_t *self, uint64_t *ids, size_t count,
                         size_t created)
{
    const char *token = self->submit_token;
    if (!token || self->lost || count == 0) {
        self->submit_token = NULL; //  no token, or the SUBMIT was refused
        return;
    }
    //  The usual case: every task new, all in the batch: the token goes in
    //  their SUBMIT record, under one checksum with them
    if (created == count && self->submit_records == 0
        && self->batch_command == DROVER_SUBMIT && self->batch_count == count) {
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_SUBMIT);
        msg.tasks = self->batch;
        msg.task_count = self->batch_count;
        msg.token = token;
        s_append (self, &msg);
        self->batch_count = 0;
        self->batch_command = 0;
        self->batch_octets = 0;
    }
    else {
        //  Some were held already, or the tasks took several records: the
        //  token and all its ids in a record of their own, after them
        s_flush_batch (self);
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_SUBMITTED);
        msg.token = token;
        msg.ids = ids;
        msg.id_count = count;
        s_append (self, &msg);
    }
    self->submit_token = NULL;
}

//  --------------------------------------------------------------------------
//  Replay

static void
s_replay_submit (task_journal_t *self, drover_msg_t *msg, uint64_t segment)
{
    for (size_t i = 0; i < msg->task_count; i++) {
        const drover_task_t *spec = &msg->tasks[i];
        if (!spec->id) {
            self->replay->undecodable++;
            continue;
        }
        void *payload =
            task_payload_new (spec->payload.data, spec->payload.size);
        dispatcher_task_t *task =
            dispatcher_restore_task (self->dispatcher, spec, &payload);
        if (task) {
            task->journal_home = segment;
            task->journal_bytes = spec->payload.size + S_TASK_OVERHEAD;
        }
        else
            zsys_warning ("broker journal: task %llu needs a lane over the "
                          "limit: not restored",
                          (unsigned long long)spec->id);
        task_payload_destroy ((task_payload_t **)&payload);
    }
}

static void
s_replay_state (task_journal_t *self, const drover_task_t *item)
{
    dispatcher_task_t *task =
        dispatcher_restore_lookup (self->dispatcher, item->id);
    if (!task)
        return; //  its newer record is further on, or it ended
    switch (item->state) {
        case DROVER_STATE_LEASED:
            dispatcher_restore_lease (self->dispatcher, task, item->attempt);
            break;
        case DROVER_STATE_REPORTING:
            dispatcher_restore_report (self->dispatcher, task, item->code,
                                       item->reason);
            break;
        case DROVER_STATE_DONE:
        case DROVER_STATE_FAILED:
        case DROVER_STATE_CANCELLED:
            dispatcher_restore_end (self->dispatcher, task, item->code);
            break;
        case DROVER_STATE_UNKNOWN:
            dispatcher_restore_withdraw (self->dispatcher, task);
            break;
        default: self->replay->unknown++;
    }
}

static int
s_replay_record (const drover_frame_t *frames, size_t frame_count,
                 uint64_t segment, void *arg)
{
    task_journal_t *self = (task_journal_t *)arg;
    drover_msg_t msg;
    drover_msg_init (&msg, 0);
    if (drover_msg_decode (&msg, frames, frame_count) != 0) {
        if (self->replay->undecodable++ < S_MAX_WARNINGS)
            zsys_warning ("broker journal: segment %llu: a record is no "
                          "valid message (%s): skipped",
                          (unsigned long long)segment, drover_msg_error (&msg));
        return 0;
    }
    switch (msg.command) {
        case DROVER_SUBMIT:
            s_replay_submit (self, &msg, segment);
            if (msg.token) {
                uint64_t ids[DROVER_MAX_BATCH];
                for (size_t i = 0; i < msg.task_count; i++)
                    ids[i] = msg.tasks[i].id;
                token_table_insert (self->tokens, msg.token, ids,
                                    msg.task_count);
            }
            break;
        case DROVER_STATUS_REPLY:
            for (size_t i = 0; i < msg.task_count; i++)
                s_replay_state (self, &msg.tasks[i]);
            break;
        case DROVER_FAIL:
            for (size_t i = 0; i < msg.task_count; i++) {
                dispatcher_task_t *task = dispatcher_restore_lookup (
                    self->dispatcher, msg.tasks[i].id);
                if (task)
                    dispatcher_restore_failure (self->dispatcher, task,
                                                &msg.tasks[i]);
            }
            break;
        case DROVER_SUBMITTED:
            if (msg.token)
                token_table_insert (self->tokens, msg.token, msg.ids,
                                    msg.id_count);
            break;
        case DROVER_RETRY:
            for (size_t i = 0; i < msg.id_count; i++) {
                dispatcher_task_t *task =
                    dispatcher_restore_lookup (self->dispatcher, msg.ids[i]);
                if (task)
                    dispatcher_restore_undead (self->dispatcher, task);
            }
            break;
        default: self->replay->unknown++;
    }
    drover_msg_reset (&msg);
    return 0;
}

task_journal_t *
task_journal_open (const drover_journal_config_t *config,
                   dispatcher_t *dispatcher, token_table_t *tokens,
                   task_journal_replay_t *replay, char **error)
{
    drover_journal_t *journal = drover_journal_open (config, error);
    if (!journal)
        return NULL;
    task_journal_t *self = (task_journal_t *)zmalloc (sizeof *self);
    assert (self);
    self->journal = journal;
    self->dispatcher = dispatcher;
    self->tokens = tokens;
    self->segment_size = config->segment_size;
    self->batch =
        (drover_task_t *)calloc (DROVER_MAX_BATCH, sizeof (drover_task_t));
    assert (self->batch);

    *replay = (task_journal_replay_t){0};
    self->replay = replay;
    int64_t started = zclock_mono ();
    int rc = drover_journal_replay (journal, s_replay_record, self,
                                    &replay->journal);
    self->replay = NULL;
    if (rc != 0) {
        if (error)
            *error = zsys_sprintf ("cannot read the journal: %s",
                                   drover_journal_error (journal));
        task_journal_destroy (&self);
        return NULL;
    }
    replay->elapsed_ms = zclock_mono () - started;
    replay->tasks = dispatcher_task_count (dispatcher);
    replay->dead = dispatcher_dead_count (dispatcher);
    for (dispatcher_task_t *task = dispatcher_all_first (dispatcher); task;
         task = dispatcher_all_next (dispatcher))
        self->live += task->journal_bytes;
    dispatcher_set_observer (dispatcher, s_observe, self);
    return self;
}

void
task_journal_destroy (task_journal_t **self_p)
{
    task_journal_t *self = *self_p;
    if (!self)
        return;
    dispatcher_set_observer (self->dispatcher, NULL, NULL);
    if (!self->lost) {
        s_flush_batch (self);
        drover_journal_commit (self->journal, true);
    }
    drover_journal_close (&self->journal);
    free (self->batch);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Commits and compaction

//  Most segments one commit compacts: enough to catch up with a burst
//  that filled several segments between two commits, few enough that a
//  commit stays short
#define S_COMPACT_PER_COMMIT 16

//  Moves the live tasks of the oldest segment to the head and deletes it,
//  when the journal holds more than twice the live octets (plus a
//  segment, so that a small journal is left alone). Returns true if it
//  deleted one.
static bool
s_compact (task_journal_t *self)
{
    uint64_t oldest = drover_journal_oldest (self->journal);
    if (oldest >= drover_journal_segment (self->journal)
        || drover_journal_size (self->journal)
               <= 2 * self->live + self->segment_size)
        return false;
    uint64_t segment = drover_journal_segment (self->journal);
    for (dispatcher_task_t *task = dispatcher_all_first (self->dispatcher);
         task; task = dispatcher_all_next (self->dispatcher))
        if (task->journal_home <= oldest)
            s_snapshot (self, task);
    s_flush_batch (self);
    //  A failed commit takes back only the snapshots: the journal still
    //  holds everything, in the old segment, which stays
    if (self->lost || drover_journal_commit (self->journal, true) != 0) {
        zsys_warning ("broker journal: compaction postponed: %s",
                      drover_journal_error (self->journal));
        return false;
    }
    s_rehome (self, oldest, segment);
    if (drover_journal_drop_before (self->journal, oldest + 1) != 0) {
        zsys_warning ("broker journal: compaction: %s",
                      drover_journal_error (self->journal));
        return false;
    }
    self->compacted++;
    return true;
}

int
task_journal_commit (task_journal_t *self, bool sync)
{
    if (self->lost)
        return DROVER_ESTORAGE;
    s_flush_batch (self);
    if (self->lost || drover_journal_commit (self->journal, sync) != 0) {
        self->lost = true;
        return DROVER_ESTORAGE;
    }
    //  What waited for this commit is on disk, whatever compaction does
    for (int i = 0; i < S_COMPACT_PER_COMMIT && s_compact (self); i++)
        ;
    return 0;
}

bool
task_journal_pending (task_journal_t *self)
{
    return self->batch_count > 0 || drover_journal_pending (self->journal);
}

bool
task_journal_unsynced (task_journal_t *self)
{
    return drover_journal_unsynced (self->journal);
}

bool
task_journal_lost (task_journal_t *self)
{
    return self->lost;
}

int
task_journal_checkpoint (task_journal_t *self)
{
    self->batch_count = 0; //  records of a lost journal: superseded
    self->batch_command = 0;
    if (drover_journal_rotate (self->journal) != 0)
        return DROVER_ESTORAGE;
    uint64_t first = drover_journal_segment (self->journal);
    self->lost = false; //  appends count again; a failure sets it anew
    for (dispatcher_task_t *task = dispatcher_all_first (self->dispatcher);
         task; task = dispatcher_all_next (self->dispatcher))
        s_snapshot (self, task);
    s_flush_batch (self);
    if (self->lost || drover_journal_commit (self->journal, true) != 0) {
        self->lost = true;
        return DROVER_ESTORAGE;
    }
    s_rehome (self, UINT64_MAX, first);
    if (drover_journal_drop_before (self->journal, first) != 0)
        zsys_warning ("broker journal: checkpoint: %s",
                      drover_journal_error (self->journal));
    return 0;
}

const char *
task_journal_error (task_journal_t *self)
{
    return drover_journal_error (self->journal);
}

uint64_t
task_journal_size (task_journal_t *self)
{
    return drover_journal_size (self->journal);
}

uint64_t
task_journal_live (task_journal_t *self)
{
    return self->live;
}

uint64_t
task_journal_compacted (task_journal_t *self)
{
    return self->compacted;
}
