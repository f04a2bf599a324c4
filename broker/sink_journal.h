/*  sink_journal.h - the sink's durable store: the results it accepted, as
    records in a drover_journal (proto/JOURNAL.md, "Sink journal").

    An accepted result is one RESULT record (one item and its payload); a
    forgotten result is part of a STATUS_REPLY record whose items say
    {id, state unknown}. Replay applies them oldest first, so the last
    record of an id says whether it is held.

    The sink stages records here as it accepts and forgets results, and
    commits once per reactor turn: with sync when a result waits for its
    acknowledgement (group commit). Only after its record is committed is
    a result handed back (sink_journal_committed_fn), so the sink can send
    STORED and publish it. When a commit fails (disk full, I/O error) the
    staged records stay staged and the commit is tried again, at most
    every SINK_JOURNAL_RETRY_MS, until it succeeds.

    Compaction: each stored result has a *home*, the segment its newest
    RESULT record is in (or a later one: a commit may start a new segment,
    so the home is a lower bound, which is the safe side). When the
    journal is much larger than the live records, the results homed in the
    oldest segment are written again (relocated) and that segment is
    deleted; segments nobody is homed in are deleted at once. So disk use
    stays proportional to the results held, and one old result never pins
    old segments.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef SINK_JOURNAL_H_INCLUDED
#define SINK_JOURNAL_H_INCLUDED

#include "drover_journal.h"
#include <czmq.h>

//  Least time between two attempts to commit while commits fail (ms).
#define SINK_JOURNAL_RETRY_MS 500

//  What the journal knows of one stored result; the sink embeds it in its
//  result and points item and payload at the result's own.
typedef struct {
    const drover_task_t *item; //  id, attempt, code and details
    zframe_t *payload;         //  the result octets (not owned)
    uint64_t segment;          //  its home: its newest record is in this
                               //  segment or a later one; 0: not on disk
    uint64_t size;             //  octets its record takes
    bool staged_;              //  private: waits for a commit
    void *handle_;             //  private: place in the staged list or the
                               //  home order
} sink_home_t;

typedef struct {
    const char *dir;           //  the journal directory
    drover_fsync_t fsync;      //  sync policy
    uint32_t sync_interval_ms; //  BATCH: longest wait for an fdatasync
    uint64_t segment_size;     //  0: the journal's default
} sink_journal_config_t;

//  What replay found, and what the journal holds now.
typedef struct {
    uint64_t records;        //  records replayed
    uint64_t skipped;        //  records that did not decode or were not
                             //  RESULT or STATUS_REPLY: skipped
    uint64_t corrupt;        //  damaged regions the journal set aside
    uint64_t corrupt_bytes;  //  their octets
    uint64_t torn_bytes;     //  octets of a torn last record cut off
    uint64_t journal_octets; //  octets in the journal's segments
    uint64_t live_octets;    //  octets of the records still needed
    uint64_t relocated;      //  records written again by compaction
    uint64_t dropped;        //  segments deleted by compaction
    uint64_t failures;       //  commits that failed
    bool failing;            //  the last commit failed
} sink_journal_stats_t;

typedef struct sink_journal_t sink_journal_t;

//  Opens the journal. Returns NULL with a malloc'd reason in *error when it
//  cannot (the directory cannot be made or read, another process holds
//  it, a foreign segment).
sink_journal_t *sink_journal_open (const sink_journal_config_t *config,
                                   char **error);

//  Commits what is staged (without calling back: nobody hears of it),
//  closes the journal and frees it. Nullifies *self_p.
void sink_journal_close (sink_journal_t **self_p);

//  Replay: a stored result (the callee takes *payload_p and calls
//  sink_journal_link with the segment), and a forgotten one.
typedef void (sink_journal_result_fn) (const drover_task_t *item,
                                       zframe_t **payload_p, uint64_t segment,
                                       void *arg);
typedef void (sink_journal_forget_fn) (uint64_t id, void *arg);

//  Reads the journal, oldest record first, calling on_result and on_forget;
//  skips (counts, warns about) records it cannot use, and logs a summary.
//  Call once, right after open. Returns 0 or DROVER_ESTORAGE with a malloc'd
//  reason in *error.
int sink_journal_replay (sink_journal_t *self,
                         sink_journal_result_fn *on_result,
                         sink_journal_forget_fn *on_forget, void *arg,
                         char **error);

//  Replay: home is that of a result just read from segment.
void sink_journal_link (sink_journal_t *self, sink_home_t *home,
                        uint64_t segment);

//  Stages the RESULT record of a newly accepted result.
void sink_journal_add (sink_journal_t *self, sink_home_t *home);

//  Stages the forget record of a stored result and stops tracking it. The
//  result may be destroyed once this returns.
void sink_journal_forget (sink_journal_t *self, sink_home_t *home);

//  Stops tracking a result without a record (replay replaced or forgot it).
void sink_journal_unlink (sink_journal_t *self, sink_home_t *home);

//  A staged result whose record is committed.
typedef void (sink_journal_committed_fn) (sink_home_t *home, void *arg);

//  Commits what is staged, if anything is or an earlier write waits for
//  its fdatasync, then compacts a step. Calls committed for each staged
//  result once its record is committed. While commits fail, an attempt
//  comes at most every SINK_JOURNAL_RETRY_MS (earlier calls return
//  DROVER_ESTORAGE at once); the first failure of an episode and the
//  recovery are logged. Returns 0 or DROVER_ESTORAGE.
int sink_journal_commit (sink_journal_t *self,
                         sink_journal_committed_fn *committed, void *arg);

//  The journal's figures.
void sink_journal_stats (sink_journal_t *self, sink_journal_stats_t *stats);

#endif
