/*  sink_journal.c - the sink's durable store: result records in a journal,
    group commits, retries while the disk refuses, replay and compaction.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "sink_journal.h"

//  Replay warns about the first few records it skips, then only counts.
#define SINK_JOURNAL_WARNINGS 10

struct sink_journal_t {
    drover_journal_t *journal; //  the records
    uint64_t segment_size;     //  octets that close a segment
    zlistx_t *staged;          //  sink_home_t waiting for a commit, in order
    zlistx_t *homes;           //  sink_home_t on disk, by segment (ascending)
    uint64_t *forgets;         //  ids whose forget record waits for a commit
    size_t forget_count;       //  how many
    size_t forget_max;         //  room in forgets
    uint64_t live_octets;      //  octets of the records of homes
    bool failing;              //  the last commit failed
    int64_t tried_at;          //  when that commit was tried (ms)
    sink_journal_stats_t stats;
    //  During replay only
    sink_journal_result_fn *on_result;
    sink_journal_forget_fn *on_forget;
    void *arg;
    uint64_t replay_size; //  octets of each result of the record replayed
    bool drop_failing;    //  deleting old segments failed (logged once)
};

//  Octets a record takes beyond its frames: magic, length, CRC, frame
//  count (JOURNAL.md), and the size of each frame.
#define SINK_RECORD_HEAD  16
#define SINK_RECORD_FRAME 4

sink_journal_t *
sink_journal_open (const sink_journal_config_t *config, char **error)
{
    drover_journal_config_t journal_config = drover_journal_config_default ();
    journal_config.dir = config->dir;
    journal_config.fsync = config->fsync;
    if (config->sync_interval_ms)
        journal_config.sync_interval_ms = config->sync_interval_ms;
    if (config->segment_size)
        journal_config.segment_size = config->segment_size;
    drover_journal_t *journal = drover_journal_open (&journal_config, error);
    if (!journal)
        return NULL;
    sink_journal_t *self = (sink_journal_t *)zmalloc (sizeof *self);
    assert (self);
    self->journal = journal;
    self->segment_size = journal_config.segment_size;
    self->staged = zlistx_new ();
    self->homes = zlistx_new ();
    assert (self->staged && self->homes);
    return self;
}

//  Appends the RESULT record of one result; *size is the octets it takes.
static int
s_append_result (sink_journal_t *self, sink_home_t *home, uint64_t *size)
{
    drover_task_t item = *home->item;
    item.payload = (drover_bytes_t){NULL, 0};
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RESULT);
    msg.tasks = &item;
    msg.task_count = 1;
    uint8_t *header;
    size_t header_size;
    int rc = drover_msg_encode (&msg, &header, &header_size);
    if (rc == 0) {
        uint8_t command = DROVER_RESULT;
        drover_frame_t frames[4] = {
            {DROVER_SIGNATURE, DROVER_SIGNATURE_SIZE},
            {&command, 1},
            {header, header_size},
            {zframe_data (home->payload), zframe_size (home->payload)},
        };
        rc = drover_journal_append (self->journal, frames, 4);
        *size = SINK_RECORD_HEAD + 4 * SINK_RECORD_FRAME + DROVER_SIGNATURE_SIZE
                + 1 + header_size + zframe_size (home->payload);
        free (header);
    }
    if (rc)
        zsys_error ("sink: cannot journal the result of task %llu: %s",
                    (unsigned long long)item.id,
                    rc == DROVER_EINVAL ? drover_msg_error (&msg)
                                        : drover_strerror (rc));
    return rc;
}

//  Appends the forget records, DROVER_MAX_BATCH ids per record.
static int
s_append_forgets (sink_journal_t *self)
{
    drover_task_t *items =
        (drover_task_t *)calloc (DROVER_MAX_BATCH, sizeof (drover_task_t));
    assert (items);
    int rc = 0;
    for (size_t done = 0; rc == 0 && done < self->forget_count;) {
        size_t count = self->forget_count - done;
        if (count > DROVER_MAX_BATCH)
            count = DROVER_MAX_BATCH;
        for (size_t i = 0; i < count; i++)
            items[i] = (drover_task_t){.id = self->forgets[done + i],
                                       .state = DROVER_STATE_UNKNOWN};
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_STATUS_REPLY);
        msg.tasks = items;
        msg.task_count = count;
        rc = drover_journal_append_msg (self->journal, &msg);
        done += count;
    }
    free (items);
    return rc;
}

static int
s_failed (sink_journal_t *self, int rc)
{
    if (!self->failing)
        zsys_error ("sink: cannot write the journal: %s; new results wait in "
                    "memory, unacknowledged, until it can",
                    drover_journal_error (self->journal));
    self->failing = true;
    self->tried_at = zclock_mono ();
    self->stats.failures++;
    return rc;
}

//  Puts a home at the end of the home order (its segment is the newest).
static void
s_link (sink_journal_t *self, sink_home_t *home, uint64_t segment)
{
    home->staged_ = false;
    home->segment = segment;
    home->handle_ = zlistx_add_end (self->homes, home);
    self->live_octets += home->size;
}

static int
s_drop (sink_journal_t *self, uint64_t segment)
{
    uint64_t oldest = drover_journal_oldest (self->journal);
    int rc = drover_journal_drop_before (self->journal, segment);
    if (rc && !self->drop_failing)
        zsys_warning ("sink: cannot delete old journal segments: %s",
                      drover_journal_error (self->journal));
    self->drop_failing = rc != 0;
    if (rc == 0)
        self->stats.dropped += segment - oldest;
    return rc;
}

//  Deletes the segments that hold no live record, and when the journal
//  is much bigger than its live records, writes the results homed in the
//  oldest segment again so that segment can go too: at most one segment
//  written again per call, so a big relocation does not stall the sink.
static void
s_compact (sink_journal_t *self)
{
    drover_journal_t *journal = self->journal;
    for (int round = 0; round < 64 && !self->failing; round++) {
        uint64_t current = drover_journal_segment (journal);
        uint64_t oldest = drover_journal_oldest (journal);
        if (oldest >= current)
            return;
        sink_home_t *first = (sink_home_t *)zlistx_first (self->homes);
        uint64_t keep =
            first && first->segment < current ? first->segment : current;
        if (keep > oldest) {
            //  Nothing live before keep: those segments go at no cost
            if (s_drop (self, keep))
                return;
            continue;
        }
        uint64_t live = self->live_octets > self->segment_size
                            ? self->live_octets
                            : self->segment_size;
        if (drover_journal_size (journal) <= 2 * live)
            return;
        //  Relocate the results homed in the oldest segment (the head of
        //  the home order), then delete it
        size_t count = 0;
        for (sink_home_t *home = first; home && home->segment <= oldest;
             home = (sink_home_t *)zlistx_next (self->homes)) {
            uint64_t size;
            if (s_append_result (self, home, &size))
                continue; //  cannot happen: it was appended before
            count++;
        }
        int rc = drover_journal_commit (journal, true);
        if (rc) {
            s_failed (self, rc);
            return;
        }
        while ((first = (sink_home_t *)zlistx_first (self->homes))
               && first->segment <= oldest) {
            zlistx_delete (self->homes, first->handle_);
            self->live_octets -= first->size;
            s_link (self, first, current);
        }
        self->stats.relocated += count;
        s_drop (self, oldest + 1);
        return;
    }
}

int
sink_journal_commit (sink_journal_t *self, sink_journal_committed_fn *committed,
                     void *arg)
{
    assert (self);
    if (self->failing
        && zclock_mono () - self->tried_at < SINK_JOURNAL_RETRY_MS)
        return DROVER_ESTORAGE;
    bool acknowledge = zlistx_size (self->staged) > 0;
    if (acknowledge || self->forget_count > 0 || self->failing
        || drover_journal_unsynced (self->journal)) {
        //  Forgets first: a result stored again after it was forgotten
        //  comes after its forget record
        int rc = s_append_forgets (self);
        uint64_t segment = drover_journal_segment (self->journal);
        zlistx_t *unwritable = NULL;
        for (sink_home_t *home = (sink_home_t *)zlistx_first (self->staged);
             rc == 0 && home; home = (sink_home_t *)zlistx_next (self->staged))
            if (s_append_result (self, home, &home->size)) {
                if (!unwritable)
                    unwritable = zlistx_new ();
                zlistx_add_end (unwritable, home);
            }
        if (rc == 0)
            rc = drover_journal_commit (self->journal, acknowledge);
        if (rc) {
            zlistx_destroy (&unwritable);
            return s_failed (self, rc);
        }
        if (self->failing)
            zsys_info ("sink: the journal is writable again");
        self->failing = false;
        self->forget_count = 0;
        sink_home_t *home;
        while ((home = (sink_home_t *)zlistx_detach (self->staged, NULL))) {
            if (unwritable && zlistx_find (unwritable, home)) {
                //  Kept in memory only: better than never acknowledged
                home->staged_ = false;
                home->handle_ = NULL;
                home->segment = 0;
            }
            else
                s_link (self, home, segment);
            committed (home, arg);
        }
        zlistx_destroy (&unwritable);
    }
    s_compact (self);
    return self->failing ? DROVER_ESTORAGE : 0;
}

void
sink_journal_close (sink_journal_t **self_p)
{
    sink_journal_t *self = *self_p;
    if (!self)
        return;
    //  Last chance for what is staged: on disk, though nobody hears of it
    //  (a node sends again and learns the result is stored)
    int rc = s_append_forgets (self);
    for (sink_home_t *home = (sink_home_t *)zlistx_first (self->staged);
         rc == 0 && home; home = (sink_home_t *)zlistx_next (self->staged))
        s_append_result (self, home, &home->size);
    if (rc == 0 && drover_journal_pending (self->journal))
        rc = drover_journal_commit (self->journal, true);
    if (rc)
        zsys_error ("sink: cannot write the journal: %s; results not "
                    "acknowledged yet are lost",
                    drover_journal_error (self->journal));
    drover_journal_close (&self->journal);
    zlistx_destroy (&self->staged);
    zlistx_destroy (&self->homes);
    free (self->forgets);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Replay

static void
s_skip (sink_journal_t *self, uint64_t segment, const char *why)
{
    if (self->stats.skipped++ < SINK_JOURNAL_WARNINGS)
        zsys_warning ("sink: journal segment %llu: record skipped: %s",
                      (unsigned long long)segment, why);
}

static int
s_replay_record (const drover_frame_t *frames, size_t frame_count,
                 uint64_t segment, void *arg)
{
    sink_journal_t *self = (sink_journal_t *)arg;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_HEARTBEAT);
    int rc = drover_msg_decode (&msg, frames, frame_count);
    if (rc) {
        s_skip (self, segment, drover_msg_error (&msg));
        return 0;
    }
    if (msg.command == DROVER_RESULT) {
        //  What the record takes, shared by its results
        uint64_t size = SINK_RECORD_HEAD;
        for (size_t i = 0; i < frame_count; i++)
            size += SINK_RECORD_FRAME + frames[i].size;
        self->replay_size = msg.task_count ? size / msg.task_count : size;
        for (size_t i = 0; i < msg.task_count; i++) {
            drover_task_t *item = &msg.tasks[i];
            zframe_t *payload =
                zframe_new (item->payload.data, item->payload.size);
            assert (payload);
            self->on_result (item, &payload, segment, self->arg);
            zframe_destroy (&payload);
        }
    }
    else if (msg.command == DROVER_STATUS_REPLY)
        for (size_t i = 0; i < msg.task_count; i++)
            if (msg.tasks[i].state == DROVER_STATE_UNKNOWN)
                self->on_forget (msg.tasks[i].id, self->arg);
            else
                s_skip (self, segment,
                        "a STATUS_REPLY item that is not a "
                        "forget");
    else {
        char why[64];
        snprintf (why, sizeof why, "unexpected command %s",
                  drover_command_name (msg.command));
        s_skip (self, segment, why);
    }
    drover_msg_reset (&msg);
    return 0;
}

int
sink_journal_replay (sink_journal_t *self, sink_journal_result_fn *on_result,
                     sink_journal_forget_fn *on_forget, void *arg, char **error)
{
    self->on_result = on_result;
    self->on_forget = on_forget;
    self->arg = arg;
    drover_journal_stats_t stats = {0};
    uint64_t records = self->stats.records;
    int rc =
        drover_journal_replay (self->journal, s_replay_record, self, &stats);
    if (rc) {
        if (error)
            *error = zsys_sprintf ("cannot read the journal: %s",
                                   drover_journal_error (self->journal));
        return rc;
    }
    self->stats.records = records + stats.records;
    self->stats.corrupt = stats.corrupt;
    self->stats.corrupt_bytes = stats.corrupt_bytes;
    self->stats.torn_bytes = stats.torn_bytes;
    self->on_result = NULL;
    self->on_forget = NULL;
    self->arg = NULL;
    return 0;
}

void
sink_journal_link (sink_journal_t *self, sink_home_t *home, uint64_t segment)
{
    home->size = self->replay_size;
    s_link (self, home, segment);
}

//  --------------------------------------------------------------------------
//  Results

void
sink_journal_add (sink_journal_t *self, sink_home_t *home)
{
    home->size = 0; //  known once appended
    home->segment = 0;
    home->staged_ = true;
    home->handle_ = zlistx_add_end (self->staged, home);
}

void
sink_journal_unlink (sink_journal_t *self, sink_home_t *home)
{
    if (!home->handle_)
        return;
    if (home->staged_)
        zlistx_delete (self->staged, home->handle_);
    else {
        zlistx_delete (self->homes, home->handle_);
        self->live_octets -= home->size;
    }
    home->handle_ = NULL;
    home->staged_ = false;
}

void
sink_journal_forget (sink_journal_t *self, sink_home_t *home)
{
    bool on_disk = home->handle_ && !home->staged_;
    sink_journal_unlink (self, home);
    if (!on_disk)
        return; //  never written: nothing to undo
    if (self->forget_count == self->forget_max) {
        self->forget_max = self->forget_max ? 2 * self->forget_max : 64;
        self->forgets = (uint64_t *)realloc (
            self->forgets, self->forget_max * sizeof (uint64_t));
        assert (self->forgets);
    }
    self->forgets[self->forget_count++] = home->item->id;
}

void
sink_journal_stats (sink_journal_t *self, sink_journal_stats_t *stats)
{
    *stats = self->stats;
    stats->journal_octets = drover_journal_size (self->journal);
    stats->live_octets = self->live_octets;
    stats->failing = self->failing;
}
