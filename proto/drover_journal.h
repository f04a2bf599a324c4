/*  drover_journal.h - an append-only, segmented journal of DTP messages on
    local disk: the durable form of the wire schema (proto/JOURNAL.md).

    A record is one message as it travels (its frames: signature, command,
    header, then one payload frame per task item), framed with a length
    and a CRC-32 so that a torn or corrupt record is found on replay.
    Records go to numbered segment files in one directory; a full segment
    is closed and a new one started, and the owner deletes old segments
    once nothing in them is live (compaction is the owner's business: only
    it knows what is live).

    Writes are buffered: drover_journal_append collects records in memory,
    drover_journal_commit writes them with one write() per segment touched
    and, if asked or if the policy says so, one fdatasync(): group commit.
    A commit that fails (disk full, I/O error) rolls the segment back to
    the end of the last good commit, drops the buffered records and
    returns DROVER_ESTORAGE; the journal stays usable, and the next commit
    tries again.

    One process at a time: open takes an exclusive lock on DIR/LOCK.

    Usage:
        drover_journal_config_t config = drover_journal_config_default ();
        config.dir = "/var/lib/drover/broker";
        drover_journal_t *journal = drover_journal_open (&config, &error);
        drover_journal_replay (journal, s_apply, self, &stats);
        drover_journal_append (journal, frames, frame_count);
        if (drover_journal_commit (journal, true) == 0)
            ... send acknowledgements ...

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_JOURNAL_H_INCLUDED
#define DROVER_JOURNAL_H_INCLUDED

#include "drover_msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*  The format version written in every segment header (JOURNAL.md). */
#define DROVER_JOURNAL_VERSION 1

typedef struct drover_journal_t drover_journal_t;

/*  When a commit reaches the disk. */
typedef enum {
    DROVER_FSYNC_NEVER,  /* write(), never fdatasync: survives a killed
                            process, not a power cut or kernel crash */
    DROVER_FSYNC_BATCH,  /* fdatasync when the caller asks (a commit that
                            acknowledges something) and at least every
                            sync_interval_ms otherwise */
    DROVER_FSYNC_ALWAYS, /* fdatasync on every commit */
} drover_fsync_t;

typedef struct {
    const char *dir;           /* the journal's directory; created (one
                                  level) if missing */
    uint64_t segment_size;     /* a segment is closed once it holds this
                                  many octets (a record is never split) */
    drover_fsync_t fsync;      /* sync policy */
    uint32_t sync_interval_ms; /* BATCH: longest time an unsynced commit
                                  waits for its fdatasync */
} drover_journal_config_t;

/*  Defaults: 64 MiB segments, BATCH, 200 ms. */
drover_journal_config_t drover_journal_config_default (void);

/*  Parses "always", "batch" or "never". Returns 0 or DROVER_EINVAL. */
int drover_journal_fsync_parse (const char *text, drover_fsync_t *fsync);

/*  Opens the journal in config->dir, creating the directory if missing.
    Does not read the records: call drover_journal_replay next (appending
    to a journal that was not replayed is refused). Returns NULL with a
    malloc'd reason in *error (caller frees) when the directory cannot be
    created or read, another process holds it, or a segment has a foreign
    header or another format version. */
drover_journal_t *drover_journal_open (const drover_journal_config_t *config,
                                       char **error);

/*  Commits what is buffered (with fdatasync unless the policy is NEVER),
    releases the lock, and frees the journal. Nullifies *self_p. */
void drover_journal_close (drover_journal_t **self_p);

/*  Called for each valid record, oldest first. frames point into memory
    that lives only during the call. segment is the number of the segment
    the record is in. Return 0 to go on, anything else to stop the replay
    (drover_journal_replay then returns it). */
typedef int (drover_journal_replay_fn) (const drover_frame_t *frames,
                                        size_t frame_count, uint64_t segment,
                                        void *arg);

/*  What a replay found. */
typedef struct {
    uint64_t segments;      /* segment files read */
    uint64_t records;       /* valid records passed to the callback */
    uint64_t bytes;         /* octets in all segments */
    uint64_t corrupt;       /* damaged regions skipped (bad checksum,
                               impossible length) before the tail */
    uint64_t corrupt_bytes; /* octets in those regions */
    uint64_t torn_bytes;    /* octets cut off the end of the newest
                               segment (a record torn by a crash) */
} drover_journal_stats_t;

/*  Reads every segment, oldest first, and calls fn for each valid record.
    A damaged region (checksum mismatch or impossible length) followed by
    valid records is reported on stderr, copied to
    DIR/corrupt/SEGMENT-OFFSET.bin (set aside, never replayed) and
    skipped: replay resumes at the next valid record. Damage at the very
    end of the newest segment is a torn write: it is truncated away with a
    warning. Then appends go to a fresh segment. Returns 0, fn's non-zero
    return, or DROVER_ESTORAGE (with the reason in
    drover_journal_error) on an I/O error. Call once, right after open. */
int drover_journal_replay (drover_journal_t *self, drover_journal_replay_fn *fn,
                           void *arg, drover_journal_stats_t *stats);

/*  Buffers one record: the message's frames as they travel (signature,
    command, the header drover_msg_encode made, then its payload frames),
    as drover_msg_decode takes them back on replay. Nothing reaches the
    disk before drover_journal_commit. Returns 0, DROVER_EINVAL before
    drover_journal_replay, or DROVER_ETOOBIG for a record over 4 GiB. */
int drover_journal_append (drover_journal_t *self, const drover_frame_t *frames,
                           size_t frame_count);

/*  Encodes msg (drover_msg_encode) and appends it with its payloads.
    Returns 0, DROVER_EINVAL if msg breaks the spec, or DROVER_ETOOBIG. */
int drover_journal_append_msg (drover_journal_t *self, drover_msg_t *msg);

/*  Writes the buffered records, starting a new segment first when the
    current one is full. With sync (unless the policy is NEVER), policy
    ALWAYS, or BATCH when sync_interval_ms passed since the last fdatasync,
    the data is on disk when it returns. Returns 0, or DROVER_ESTORAGE:
    nothing of this commit is kept (the segment is truncated back to its
    last good end), the reason is in drover_journal_error, and the journal
    can be committed to again. A commit with nothing buffered only syncs
    when an earlier write is unsynced. */
int drover_journal_commit (drover_journal_t *self, bool sync);

/*  True when records are buffered and not yet committed. */
bool drover_journal_pending (drover_journal_t *self);

/*  True when a committed write still waits for its fdatasync (policy
    BATCH); the caller should commit again within sync_interval_ms. */
bool drover_journal_unsynced (drover_journal_t *self);

/*  Closes the current segment (syncing it) and starts a new one, so that
    what is appended next lands in a segment of its own. Returns 0 or
    DROVER_ESTORAGE. */
int drover_journal_rotate (drover_journal_t *self);

/*  The number of the segment new records go to. Segment numbers grow by
    one from 1 and are never reused. */
uint64_t drover_journal_segment (drover_journal_t *self);

/*  The number of the oldest segment still on disk. */
uint64_t drover_journal_oldest (drover_journal_t *self);

/*  Deletes every segment older than segment (never the current one) and
    syncs the directory. Returns 0 or DROVER_ESTORAGE. */
int drover_journal_drop_before (drover_journal_t *self, uint64_t segment);

/*  Octets in all segments on disk, committed records only. */
uint64_t drover_journal_size (drover_journal_t *self);

/*  Octets in one segment (0 if it is not on disk). */
uint64_t drover_journal_segment_size (drover_journal_t *self, uint64_t segment);

/*  Why the last failing call failed (the path and strerror), or "". */
const char *drover_journal_error (drover_journal_t *self);

/*  The journal's directory. */
const char *drover_journal_dir (drover_journal_t *self);

#ifdef __cplusplus
}
#endif

#endif
