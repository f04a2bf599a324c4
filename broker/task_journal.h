/*  task_journal.h - the broker's durable task state: the dispatcher's state
    changes written to a drover_journal, replayed on start, compacted as
    tasks end (proto/JOURNAL.md, "Broker journal").

    Every change the dispatcher reports (submitted, leased, failed,
    reported, ended, withdrawn, no longer dead) becomes a record when the
    change happens; task_journal_commit writes them all with one write and,
    when an acknowledgement waits for them, one fdatasync (group commit).

    Compaction keeps disk use proportional to the live tasks: each task
    knows the segment of its newest full record (its home); when the
    journal holds more than twice the live octets (plus a segment), the
    live tasks homed in the oldest segment are written again at the head
    and that segment is deleted. So an old task never pins a segment.

    When a commit fails (disk full, I/O error) the records of the changes
    since the last good commit are gone: the journal is lost until a
    checkpoint (every live task written to a new segment, the older ones
    deleted) succeeds. The broker refuses submits meanwhile and retries
    the checkpoint.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_TASK_JOURNAL_H_INCLUDED
#define DROVER_TASK_JOURNAL_H_INCLUDED

#include "dispatcher.h"
#include "drover_journal.h"
#include "token_table.h"

typedef struct task_journal_t task_journal_t;

//  What the replay on open found.
typedef struct {
    drover_journal_stats_t journal; //  segments, records, damage
    uint64_t tasks;                 //  tasks held after the replay
    uint64_t dead;                  //  dead letters after the replay
    uint64_t undecodable;           //  records that were no valid message
    uint64_t unknown;               //  valid messages of no known meaning
    int64_t elapsed_ms;             //  time the replay took
} task_journal_replay_t;

//  Opens the journal in config->dir, replays it into dispatcher (new and
//  empty) and the SUBMIT tokens it holds into tokens, and observes the
//  dispatcher from then on. Returns NULL with a malloc'd reason in *error
//  when the journal cannot be opened or read.
task_journal_t *task_journal_open (const drover_journal_config_t *config,
                                   dispatcher_t *dispatcher,
                                   token_table_t *tokens,
                                   task_journal_replay_t *replay, char **error);

//  Brackets the handling of a SUBMIT named token (NULL: none), so that a
//  restarted broker still knows the token: begin before its tasks are
//  created, end with all its ids (created of them new tasks). The token
//  lands in its tasks' SUBMIT record when it can (one checksum for both),
//  else in a SUBMITTED record after them.
void task_journal_submit_begin (task_journal_t *self, const char *token);
void task_journal_submit_end (task_journal_t *self, uint64_t *ids, size_t count,
                              size_t created);

//  Stops observing the dispatcher, commits what is buffered, closes.
void task_journal_destroy (task_journal_t **self_p);

//  Writes the records of the changes since the last commit, with an
//  fdatasync when sync (acknowledgements wait) or when the policy says so,
//  then compacts the oldest segments that are due (at most 16). Returns 0, or DROVER_ESTORAGE: the
//  journal is lost (task_journal_lost) until a checkpoint succeeds.
int task_journal_commit (task_journal_t *self, bool sync);

//  True when changes are buffered and not yet committed.
bool task_journal_pending (task_journal_t *self);

//  True while a committed write waits for its fdatasync.
bool task_journal_unsynced (task_journal_t *self);

//  True when a failed commit lost records: the journal no longer matches
//  the dispatcher, and only a checkpoint mends it.
bool task_journal_lost (task_journal_t *self);

//  Writes every live task to a new segment and deletes the older ones.
//  Returns 0 (the journal is whole again) or DROVER_ESTORAGE.
int task_journal_checkpoint (task_journal_t *self);

//  Why the last failing call failed.
const char *task_journal_error (task_journal_t *self);

//  Octets on disk, octets of live tasks, segments compacted so far.
uint64_t task_journal_size (task_journal_t *self);
uint64_t task_journal_live (task_journal_t *self);
uint64_t task_journal_compacted (task_journal_t *self);

#endif
