/*  test_journal.c - the segmented journal (proto/drover_journal) on real
    files: round trips, rotation and deletion, torn and corrupt records,
    the lock, foreign versions, and full disks.

    Each test works in its own directory under /tmp (mkdtemp) and removes
    it at the end. The disk-full tests mount a small tmpfs in a private
    mount namespace of the test's own process (Criterion forks one per
    test), so they need root; without it they fail and say so.

    Damage is done to files with the offsets of records computed from what
    was appended (JOURNAL.md: a 20-octet segment header; a record is a
    12-octet record header, a u32 frame count and a u32 size per frame).

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_journal.h"
#include "leak_check.h"
#include "msg_fixtures.h"

#include <criterion/criterion.h>
#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

TestSuite (journal, .timeout = 120);

#define SEGMENT_HEADER 20 //  octets before the first record of a segment
#define RECORD_HEADER  12 //  magic, length, CRC

//  --------------------------------------------------------------------------
//  Files and directories

static char *
s_tmpdir (void)
{
    char path[] = "/tmp/drover-journal-XXXXXX";
    cr_assert_not_null (mkdtemp (path), "mkdtemp: %s", strerror (errno));
    char *copy = strdup (path);
    cr_assert_not_null (copy);
    return copy;
}

static int
s_remove_entry (const char *path, const struct stat *info, int flag,
                struct FTW *walk)
{
    (void)info;
    (void)flag;
    (void)walk;
    return remove (path);
}

//  Removes the tree and frees the path
static void
s_rmtree (char *path)
{
    nftw (path, s_remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free (path);
}

//  The journal's directory inside a test directory: the journal creates it
static char *
s_journal_dir (const char *base)
{
    char *dir = zsys_sprintf ("%s/journal", base);
    cr_assert_not_null (dir);
    return dir;
}

static char *
s_segment_file (const char *dir, uint64_t segment)
{
    char *path =
        zsys_sprintf ("%s/%016llx.drj", dir, (unsigned long long)segment);
    cr_assert_not_null (path);
    return path;
}

static off_t
s_file_size (const char *path)
{
    struct stat info;
    if (stat (path, &info) != 0)
        return -1;
    return info.st_size;
}

static uint8_t *
s_file_read (const char *path, size_t *size)
{
    off_t length = s_file_size (path);
    cr_assert_geq (length, 0, "stat %s: %s", path, strerror (errno));
    uint8_t *data = (uint8_t *)malloc ((size_t)length + 1);
    cr_assert_not_null (data);
    int fd = open (path, O_RDONLY);
    cr_assert_neq (fd, -1, "open %s: %s", path, strerror (errno));
    cr_assert_eq (read (fd, data, (size_t)length), length, "read %s", path);
    close (fd);
    *size = (size_t)length;
    return data;
}

static void
s_file_write (const char *path, const uint8_t *data, size_t size)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_neq (fd, -1, "open %s: %s", path, strerror (errno));
    cr_assert_eq (write (fd, data, size), (ssize_t)size, "write %s", path);
    close (fd);
}

//  Overwrites size octets at offset
static void
s_file_patch (const char *path, off_t offset, const void *data, size_t size)
{
    int fd = open (path, O_WRONLY);
    cr_assert_neq (fd, -1, "open %s: %s", path, strerror (errno));
    cr_assert_eq (pwrite (fd, data, size, offset), (ssize_t)size, "pwrite %s",
                  path);
    close (fd);
}

static void
s_file_put32 (const char *path, off_t offset, uint32_t value)
{
    uint8_t octets[4] = {(uint8_t)value, (uint8_t)(value >> 8),
                         (uint8_t)(value >> 16), (uint8_t)(value >> 24)};
    s_file_patch (path, offset, octets, 4);
}

//  Removes size octets at offset: what follows moves up
static void
s_file_cut (const char *path, size_t offset, size_t size)
{
    size_t length;
    uint8_t *data = s_file_read (path, &length);
    cr_assert_leq (offset + size, length);
    memmove (data + offset, data + offset + size, length - offset - size);
    s_file_write (path, data, length - size);
    free (data);
}

static void
s_file_append (const char *path, const void *data, size_t size)
{
    int fd = open (path, O_WRONLY | O_APPEND);
    cr_assert_neq (fd, -1, "open %s: %s", path, strerror (errno));
    cr_assert_eq (write (fd, data, size), (ssize_t)size, "write %s", path);
    close (fd);
}

//  True when some file in dir has a name ending in suffix
static bool
s_dir_has (const char *dir, const char *suffix)
{
    DIR *handle = opendir (dir);
    cr_assert_not_null (handle, "opendir %s: %s", dir, strerror (errno));
    bool found = false;
    struct dirent *entry;
    while (!found && (entry = readdir (handle))) {
        size_t length = strlen (entry->d_name);
        found = length >= strlen (suffix)
                && streq (entry->d_name + length - strlen (suffix), suffix);
    }
    closedir (handle);
    return found;
}

//  --------------------------------------------------------------------------
//  Records: numbered test records, and what replay hands over

//  Record i: its name, 0..63 filler octets (none for every 9th), and i
typedef struct {
    char name[32];
    uint8_t filler[64];
    uint64_t number;
    drover_frame_t frames[3];
} s_numbered_t;

static void
s_numbered (s_numbered_t *record, int i)
{
    snprintf (record->name, sizeof record->name, "record %d", i);
    size_t filler = (size_t)(i * 7) % 64;
    memset (record->filler, 'a' + i % 26, filler);
    record->number = (uint64_t)i;
    record->frames[0].data = record->name;
    record->frames[0].size = strlen (record->name);
    record->frames[1].data = filler ? record->filler : NULL;
    record->frames[1].size = filler;
    record->frames[2].data = &record->number;
    record->frames[2].size = sizeof record->number;
}

//  Octets of record i on disk
static size_t
s_numbered_size (int i)
{
    s_numbered_t record;
    s_numbered (&record, i);
    size_t size = RECORD_HEADER + 4;
    for (size_t f = 0; f < 3; f++)
        size += 4 + record.frames[f].size;
    return size;
}

static void
s_append_numbered (drover_journal_t *journal, int i)
{
    s_numbered_t record;
    s_numbered (&record, i);
    cr_assert_eq (drover_journal_append (journal, record.frames, 3), 0,
                  "append %d: %s", i, drover_journal_error (journal));
}

//  A replayed record, copied
typedef struct {
    uint64_t segment;
    size_t count;
    drover_frame_t *frames; //  octets owned
} s_record_t;

typedef struct {
    s_record_t *records;
    size_t count;
    size_t max;
    int stop_after; //  return 7 after this many records; 0: never
} s_log_t;

static int
s_collect (const drover_frame_t *frames, size_t count, uint64_t segment,
           void *arg)
{
    s_log_t *log = (s_log_t *)arg;
    if (log->count == log->max) {
        log->max = log->max ? log->max * 2 : 16;
        log->records = (s_record_t *)realloc (log->records,
                                              log->max * sizeof (s_record_t));
        cr_assert_not_null (log->records);
    }
    s_record_t *record = &log->records[log->count++];
    record->segment = segment;
    record->count = count;
    record->frames = (drover_frame_t *)calloc (count + 1, sizeof *frames);
    cr_assert_not_null (record->frames);
    for (size_t i = 0; i < count; i++) {
        void *copy = malloc (frames[i].size + 1);
        cr_assert_not_null (copy);
        if (frames[i].size)
            memcpy (copy, frames[i].data, frames[i].size);
        record->frames[i].data = copy;
        record->frames[i].size = frames[i].size;
    }
    return log->stop_after && (int)log->count == log->stop_after ? 7 : 0;
}

static void
s_log_free (s_log_t *log)
{
    for (size_t r = 0; r < log->count; r++) {
        for (size_t i = 0; i < log->records[r].count; i++)
            free ((void *)log->records[r].frames[i].data);
        free (log->records[r].frames);
    }
    free (log->records);
    memset (log, 0, sizeof *log);
}

static bool
s_frame_is (const drover_frame_t *frame, const void *data, size_t size)
{
    return frame->size == size
           && (size == 0 || !memcmp (frame->data, data, size));
}

//  Asserts that a replayed record is numbered record i
static void
s_check_numbered (const s_record_t *replayed, int i)
{
    s_numbered_t record;
    s_numbered (&record, i);
    cr_assert_eq (replayed->count, 3, "record %d: %zu frames", i,
                  replayed->count);
    for (size_t f = 0; f < 3; f++)
        cr_assert (s_frame_is (&replayed->frames[f], record.frames[f].data,
                               record.frames[f].size),
                   "record %d, frame %zu differs", i, f);
}

//  --------------------------------------------------------------------------
//  Opening

static drover_journal_t *
s_open (const char *dir, uint64_t segment_size, drover_fsync_t fsync)
{
    drover_journal_config_t config = drover_journal_config_default ();
    config.dir = dir;
    config.segment_size = segment_size;
    config.fsync = fsync;
    char *error = NULL;
    drover_journal_t *journal = drover_journal_open (&config, &error);
    cr_assert_not_null (journal, "open %s: %s", dir, error);
    cr_assert_null (error);
    return journal;
}

//  Opens and replays into log, asserting the replay succeeds
static drover_journal_t *
s_open_replayed (const char *dir, uint64_t segment_size, s_log_t *log,
                 drover_journal_stats_t *stats)
{
    drover_journal_t *journal = s_open (dir, segment_size, DROVER_FSYNC_ALWAYS);
    int rc = drover_journal_replay (journal, s_collect, log, stats);
    cr_assert_eq (rc, 0, "replay %s: %d %s", dir, rc,
                  drover_journal_error (journal));
    return journal;
}

//  Writes segments 1..segments with per_segment numbered records each, in
//  order, then closes the journal
static void
s_write_segments (const char *dir, int segments, int per_segment)
{
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, NULL, NULL);
    for (int s = 0; s < segments; s++) {
        for (int r = 0; r < per_segment; r++)
            s_append_numbered (journal, s * per_segment + r);
        cr_assert_eq (drover_journal_commit (journal, true), 0);
        if (s + 1 < segments)
            cr_assert_eq (drover_journal_rotate (journal), 0);
    }
    cr_assert_eq (drover_journal_segment (journal), (uint64_t)segments);
    drover_journal_close (&journal);
}

//  Offset of record index (0-based, within its segment) in a segment of
//  s_write_segments
static size_t
s_offset (int segment, int per_segment, int index)
{
    size_t offset = SEGMENT_HEADER;
    for (int r = 0; r < index; r++)
        offset += s_numbered_size ((segment - 1) * per_segment + r);
    return offset;
}

//  Asserts that log holds records 0..count-1 in order, except skipped
static void
s_check_sequence (const s_log_t *log, int count, const int *skipped,
                  size_t skipped_count)
{
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        bool skip = false;
        for (size_t k = 0; k < skipped_count; k++)
            skip = skip || skipped[k] == i;
        if (skip)
            continue;
        cr_assert_lt (at, log->count, "record %d missing", i);
        s_check_numbered (&log->records[at++], i);
    }
    cr_assert_eq (at, log->count, "%zu records, expected %zu", log->count, at);
}

//  --------------------------------------------------------------------------
//  Tests

LEAK_CHECKED_TEST (journal, fsync_parse)
{
    drover_fsync_t fsync = DROVER_FSYNC_BATCH;
    cr_assert_eq (drover_journal_fsync_parse ("always", &fsync), 0);
    cr_assert_eq (fsync, DROVER_FSYNC_ALWAYS);
    cr_assert_eq (drover_journal_fsync_parse ("never", &fsync), 0);
    cr_assert_eq (fsync, DROVER_FSYNC_NEVER);
    cr_assert_eq (drover_journal_fsync_parse ("batch", &fsync), 0);
    cr_assert_eq (fsync, DROVER_FSYNC_BATCH);
    const char *wrong[] = {"", "ALWAYS", "sometimes", "batch ", NULL};
    for (size_t i = 0; i < 5; i++) {
        cr_assert_eq (drover_journal_fsync_parse (wrong[i], &fsync),
                      DROVER_EINVAL, "\"%s\" parsed",
                      wrong[i] ? wrong[i] : "(null)");
        cr_assert_eq (fsync, DROVER_FSYNC_BATCH, "a failed parse wrote");
    }
    drover_journal_config_t config = drover_journal_config_default ();
    cr_assert_eq (config.segment_size, 64u << 20);
    cr_assert_eq (config.fsync, DROVER_FSYNC_BATCH);
    cr_assert_eq (config.sync_interval_ms, 200);
}

LEAK_CHECKED_TEST (journal, round_trip_across_reopen)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    size_t big_size = 1u << 20;
    uint8_t *big = (uint8_t *)malloc (big_size);
    cr_assert_not_null (big);
    for (size_t i = 0; i < big_size; i++)
        big[i] = (uint8_t)(i * 31 + i / 4096);
    drover_frame_t first[4] = {
        {"header", 6}, {NULL, 0}, {big, big_size}, {"tail", 4}};
    drover_frame_t second[1] = {{NULL, 0}};

    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, NULL, NULL);
    cr_assert_not (drover_journal_pending (journal));
    cr_assert_eq (drover_journal_append (journal, first, 4), 0);
    cr_assert_eq (drover_journal_append (journal, second, 1), 0);
    cr_assert_eq (drover_journal_append (journal, NULL, 0), 0);
    cr_assert (drover_journal_pending (journal));
    cr_assert_eq (drover_journal_commit (journal, true), 0, "%s",
                  drover_journal_error (journal));
    cr_assert_not (drover_journal_pending (journal));
    cr_assert_str_eq (drover_journal_dir (journal), dir);
    drover_journal_close (&journal);
    cr_assert_null (journal);

    s_log_t log = {0};
    drover_journal_stats_t stats;
    journal = s_open_replayed (dir, 1u << 20, &log, &stats);
    cr_assert_eq (log.count, 3);
    cr_assert_eq (stats.records, 3);
    cr_assert_eq (stats.segments, 1);
    cr_assert_eq (stats.corrupt + stats.corrupt_bytes + stats.torn_bytes, 0);
    char *file = s_segment_file (dir, 1);
    cr_assert_eq (stats.bytes, (uint64_t)s_file_size (file));
    cr_assert_eq (log.records[0].count, 4);
    for (size_t i = 0; i < 4; i++)
        cr_assert (s_frame_is (&log.records[0].frames[i], first[i].data,
                               first[i].size),
                   "frame %zu differs", i);
    cr_assert_eq (log.records[1].count, 1);
    cr_assert_eq (log.records[1].frames[0].size, 0);
    cr_assert_eq (log.records[2].count, 0);
    for (size_t r = 0; r < 3; r++)
        cr_assert_eq (log.records[r].segment, 1);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (file);
    free (big);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, append_msg_decodes_on_replay)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, NULL, NULL);
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    fx_sample (&msg, DROVER_SUBMIT);
    cr_assert_eq (drover_journal_append_msg (journal, &msg), 0, "%s",
                  drover_journal_error (journal));
    drover_msg_t bad;
    drover_msg_init (&bad, (drover_command_t)0x7f);
    cr_assert_eq (drover_journal_append_msg (journal, &bad), DROVER_EINVAL);
    cr_assert_neq (strstr (drover_journal_error (journal), "encode"), NULL,
                   "error: %s", drover_journal_error (journal));
    cr_assert_eq (drover_journal_commit (journal, true), 0);
    drover_journal_close (&journal);

    s_log_t log = {0};
    journal = s_open_replayed (dir, 1u << 20, &log, NULL);
    cr_assert_eq (log.count, 1, "the refused message was journalled");
    cr_assert_eq (log.records[0].count, 3 + msg.task_count);
    drover_msg_t out;
    drover_msg_init (&out, (drover_command_t)0);
    int rc =
        drover_msg_decode (&out, log.records[0].frames, log.records[0].count);
    cr_assert_eq (rc, 0, "decode: %s", drover_msg_error (&out));
    char why[256];
    cr_assert (fx_msg_equal (&msg, &out, why, sizeof why), "%s", why);
    drover_msg_reset (&out);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, replay_order_across_segments)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    const uint64_t segment_size = 512;
    drover_journal_t *journal = s_open_replayed (dir, segment_size, NULL, NULL);
    //  One record per commit, then three per commit
    uint64_t segment_of[60];
    for (int i = 0; i < 60; i++) {
        s_append_numbered (journal, i);
        if (i < 30 || i % 3 == 2) {
            cr_assert_eq (drover_journal_commit (journal, false), 0);
            for (int k = i < 30 ? i : i - 2; k <= i; k++)
                segment_of[k] = drover_journal_segment (journal);
        }
    }
    uint64_t last = drover_journal_segment (journal);
    cr_assert_geq (last, 5, "only %llu segments", (unsigned long long)last);
    //  Full segments hold at least segment_size octets, and were not full
    //  before their last commit (records are under 100 octets)
    for (uint64_t s = 1; s < last; s++) {
        cr_assert_geq (drover_journal_segment_size (journal, s), segment_size);
        cr_assert_lt (drover_journal_segment_size (journal, s),
                      segment_size + 3 * 100);
    }
    drover_journal_close (&journal);

    s_log_t log = {0};
    drover_journal_stats_t stats;
    journal = s_open_replayed (dir, segment_size, &log, &stats);
    cr_assert_eq (stats.segments, last);
    s_check_sequence (&log, 60, NULL, 0);
    for (int i = 0; i < 60; i++)
        cr_assert_eq (log.records[i].segment, segment_of[i],
                      "record %d: segment %llu, written to %llu", i,
                      (unsigned long long)log.records[i].segment,
                      (unsigned long long)segment_of[i]);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, rotate_and_drop_before)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, NULL, NULL);
    cr_assert_eq (drover_journal_segment (journal), 1);
    cr_assert_eq (drover_journal_oldest (journal), 1);
    cr_assert_eq (drover_journal_size (journal), 0);
    //  Rotate commits what is pending into the segment it closes
    int counts[3] = {3, 2, 1}, next = 0;
    for (int s = 0; s < 3; s++) {
        for (int r = 0; r < counts[s]; r++)
            s_append_numbered (journal, next++);
        if (s < 2)
            cr_assert_eq (drover_journal_rotate (journal), 0);
        else
            cr_assert_eq (drover_journal_commit (journal, true), 0);
    }
    cr_assert_eq (drover_journal_segment (journal), 3);
    cr_assert_eq (drover_journal_oldest (journal), 1);
    uint64_t total = 0;
    next = 0;
    for (uint64_t s = 1; s <= 3; s++) {
        char *file = s_segment_file (dir, s);
        size_t expected = SEGMENT_HEADER;
        for (int r = 0; r < counts[s - 1]; r++)
            expected += s_numbered_size (next++);
        cr_assert_eq (s_file_size (file), (off_t)expected);
        cr_assert_eq (drover_journal_segment_size (journal, s), expected);
        total += expected;
        free (file);
    }
    cr_assert_eq (drover_journal_size (journal), total);
    cr_assert_eq (drover_journal_segment_size (journal, 4), 0);

    //  Never the current segment, however far the limit
    cr_assert_eq (drover_journal_drop_before (journal, 3), 0);
    cr_assert_eq (drover_journal_drop_before (journal, 1000), 0);
    cr_assert_eq (drover_journal_oldest (journal), 3);
    for (uint64_t s = 1; s <= 3; s++) {
        char *file = s_segment_file (dir, s);
        cr_assert_eq (s_file_size (file) >= 0, s == 3, "segment %llu",
                      (unsigned long long)s);
        free (file);
    }
    cr_assert_eq (drover_journal_segment_size (journal, 1), 0);
    cr_assert_eq (drover_journal_size (journal),
                  SEGMENT_HEADER + s_numbered_size (5));
    drover_journal_close (&journal);

    s_log_t log = {0};
    journal = s_open_replayed (dir, 1u << 20, &log, NULL);
    cr_assert_eq (log.count, 1);
    s_check_numbered (&log.records[0], 5);
    cr_assert_eq (drover_journal_oldest (journal), 3);
    cr_assert_eq (drover_journal_size (journal),
                  SEGMENT_HEADER + s_numbered_size (5));
    drover_journal_close (&journal);
    s_log_free (&log);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, appends_after_replay_go_to_a_fresh_segment)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 1, 3);
    char *first = s_segment_file (dir, 1);
    off_t first_size = s_file_size (first);

    s_log_t log = {0};
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, &log, NULL);
    cr_assert_eq (drover_journal_segment (journal), 2);
    s_append_numbered (journal, 3);
    cr_assert_eq (drover_journal_commit (journal, true), 0);
    cr_assert_eq (s_file_size (first), first_size, "segment 1 was written");
    cr_assert_eq (drover_journal_segment_size (journal, 2),
                  SEGMENT_HEADER + s_numbered_size (3));
    drover_journal_close (&journal);
    s_log_free (&log);

    journal = s_open_replayed (dir, 1u << 20, &log, NULL);
    s_check_sequence (&log, 4, NULL, 0);
    cr_assert_eq (log.records[2].segment, 1);
    cr_assert_eq (log.records[3].segment, 2);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (first);
    free (dir);
    s_rmtree (base);
}

//  Replays a journal of records 0..4 in one segment whose end is torn by
//  torn octets, after good octets: checks that the torn end was cut off
//  and every whole record replayed, then that the journal goes on
static void
s_check_torn (const char *dir, const char *file, off_t good, uint64_t torn,
              int records)
{
    s_log_t log = {0};
    drover_journal_stats_t stats;
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, &log, &stats);
    cr_assert_eq (stats.torn_bytes, torn, "torn_bytes %llu, expected %llu",
                  (unsigned long long)stats.torn_bytes,
                  (unsigned long long)torn);
    cr_assert_eq (stats.corrupt, 0);
    cr_assert_eq (stats.corrupt_bytes, 0);
    cr_assert_eq (stats.bytes, (uint64_t)good + torn);
    s_check_sequence (&log, records, NULL, 0);
    cr_assert_eq (s_file_size (file), good, "the torn end is still there");
    cr_assert_eq (drover_journal_segment_size (journal, 1), (uint64_t)good);
    s_log_free (&log);
    //  The next record follows, and a second replay finds nothing torn
    s_append_numbered (journal, records);
    cr_assert_eq (drover_journal_commit (journal, true), 0);
    drover_journal_close (&journal);
    journal = s_open_replayed (dir, 1u << 20, &log, &stats);
    cr_assert_eq (stats.torn_bytes, 0);
    s_check_sequence (&log, records + 1, NULL, 0);
    char *corrupt = zsys_sprintf ("%s/corrupt", dir);
    cr_assert_eq (s_file_size (corrupt), -1, "a torn end was set aside");
    free (corrupt);
    drover_journal_close (&journal);
    s_log_free (&log);
}

LEAK_CHECKED_TEST (journal, torn_tail_cut_mid_record)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 1, 5);
    char *file = s_segment_file (dir, 1);
    off_t last = (off_t)s_offset (1, 5, 4);
    cr_assert_eq (truncate (file, last + 20), 0);
    s_check_torn (dir, file, last, 20, 4);
    free (file);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, torn_tail_garbage_appended)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 1, 5);
    char *file = s_segment_file (dir, 1);
    off_t good = s_file_size (file);
    //  Garbage that starts like a record: the record magic, taken from the
    //  first record, then a plausible length and junk
    size_t size;
    uint8_t *data = s_file_read (file, &size);
    uint8_t garbage[100];
    memset (garbage, 0xAB, sizeof garbage);
    memcpy (garbage, data + SEGMENT_HEADER, 4);
    memcpy (garbage + 50, data + SEGMENT_HEADER, 4);
    garbage[4] = 40;
    garbage[5] = garbage[6] = garbage[7] = 0;
    free (data);
    s_file_append (file, garbage, sizeof garbage);
    s_check_torn (dir, file, good, sizeof garbage, 5);
    free (file);
    free (dir);
    s_rmtree (base);
}

//  Replays a journal of 3 segments x 5 records with one damaged region in
//  segment 1 that starts at offset and holds size octets, replacing
//  record 2: checks that the region was set aside and all else replayed
static void
s_check_set_aside (const char *dir, size_t offset, size_t size)
{
    char *file = s_segment_file (dir, 1);
    size_t before_size;
    uint8_t *before = s_file_read (file, &before_size);
    s_log_t log = {0};
    drover_journal_stats_t stats;
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, &log, &stats);
    cr_assert_eq (stats.corrupt, 1, "corrupt %llu",
                  (unsigned long long)stats.corrupt);
    cr_assert_eq (stats.corrupt_bytes, size, "corrupt_bytes %llu, not %zu",
                  (unsigned long long)stats.corrupt_bytes, size);
    cr_assert_eq (stats.torn_bytes, 0);
    cr_assert_eq (stats.records, 14);
    cr_assert_eq (stats.segments, 3);
    int skipped[] = {2};
    s_check_sequence (&log, 15, skipped, 1);
    //  The segment stays as it was; the region is copied aside
    cr_assert_eq (s_file_size (file), (off_t)before_size);
    char *aside =
        zsys_sprintf ("%s/corrupt/%016llx-%zu.bin", dir, 1ull, offset);
    size_t aside_size;
    uint8_t *copy = s_file_read (aside, &aside_size);
    cr_assert_eq (aside_size, size);
    cr_assert_eq (memcmp (copy, before + offset, size), 0);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (copy);
    free (aside);
    free (before);
    free (file);
}

LEAK_CHECKED_TEST (journal, bit_flip_in_old_segment_is_set_aside)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 3, 5);
    char *file = s_segment_file (dir, 1);
    size_t offset = s_offset (1, 5, 2);
    //  One bit of the name frame of record 2
    size_t target = offset + RECORD_HEADER + 4 + 4 + 3;
    size_t size;
    uint8_t *data = s_file_read (file, &size);
    data[target] ^= 0x10;
    s_file_write (file, data, size);
    free (data);
    s_check_set_aside (dir, offset, s_numbered_size (2));
    //  The damage stays in the old segment: the next replay sees it again
    s_check_set_aside (dir, offset, s_numbered_size (2));
    free (file);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, record_cut_short_in_old_segment_is_set_aside)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 3, 5);
    char *file = s_segment_file (dir, 1);
    size_t offset = s_offset (1, 5, 2);
    //  20 octets out of record 2: records 3 and 4 move up
    s_file_cut (file, offset + RECORD_HEADER + 6, 20);
    s_check_set_aside (dir, offset, s_numbered_size (2) - 20);
    free (file);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, impossible_length_is_set_aside)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 3, 5);
    char *file = s_segment_file (dir, 1);
    size_t offset = s_offset (1, 5, 2);
    s_file_put32 (file, (off_t)offset + 4, 0xFFFFFFF0u);
    s_check_set_aside (dir, offset, s_numbered_size (2));
    free (file);
    free (dir);
    s_rmtree (base);
}

//  Changes the size of the last frame of record number (at offset in
//  file) by delta and gives it a CRC that matches: only the frame table
//  is wrong
static void
s_break_frame_table (const char *file, size_t offset, int number, int delta)
{
    size_t size;
    uint8_t *data = s_file_read (file, &size);
    uint8_t *body = data + offset + RECORD_HEADER;
    uint32_t length = (uint32_t)s_numbered_size (number) - RECORD_HEADER;
    size_t at = 4;
    for (int frame = 0; frame < 2; frame++)
        at += 4 + body[at]; //  numbered frames are under 256 octets
    body[at] = (uint8_t)(body[at] + delta);
    uint32_t crc = (uint32_t)crc32 (0L, body, length);
    s_file_write (file, data, size);
    s_file_put32 (file, (off_t)offset + 8, crc);
    free (data);
}

LEAK_CHECKED_TEST (journal, lengths_that_do_not_add_up_are_corrupt)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 3, 5);
    char *second = s_segment_file (dir, 2);
    char *third = s_segment_file (dir, 3);
    //  Record 6: a body length of 0, too short for a frame count, with
    //  the CRC of nothing (0)
    size_t six = s_offset (2, 5, 1);
    s_file_put32 (second, (off_t)six + 4, 0);
    s_file_put32 (second, (off_t)six + 8, 0);
    //  Record 8: frames one octet short of the body; record 11: one over
    s_break_frame_table (second, s_offset (2, 5, 3), 8, -1);
    s_break_frame_table (third, s_offset (3, 5, 1), 11, +1);

    s_log_t log = {0};
    drover_journal_stats_t stats;
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, &log, &stats);
    cr_assert_eq (stats.corrupt, 3);
    cr_assert_eq (stats.corrupt_bytes, s_numbered_size (6) + s_numbered_size (8)
                                           + s_numbered_size (11));
    int skipped[] = {6, 8, 11};
    s_check_sequence (&log, 15, skipped, 3);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (third);
    free (second);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, damaged_end_of_old_segment_is_corrupt_not_torn)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 2, 5);
    char *file = s_segment_file (dir, 1);
    size_t last = s_offset (1, 5, 4);
    cr_assert_eq (truncate (file, (off_t)last + 20), 0);

    s_log_t log = {0};
    drover_journal_stats_t stats;
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, &log, &stats);
    cr_assert_eq (stats.torn_bytes, 0, "an old segment was cut");
    cr_assert_eq (stats.corrupt, 1);
    cr_assert_eq (stats.corrupt_bytes, 20);
    int skipped[] = {4};
    s_check_sequence (&log, 10, skipped, 1);
    cr_assert_eq (s_file_size (file), (off_t)last + 20);
    char *aside = zsys_sprintf ("%s/corrupt/%016llx-%zu.bin", dir, 1ull, last);
    cr_assert_eq (s_file_size (aside), 20, "%s not set aside", aside);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (aside);
    free (file);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, second_open_fails_while_locked)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    drover_journal_t *first = s_open (dir, 1u << 20, DROVER_FSYNC_BATCH);
    drover_journal_config_t config = drover_journal_config_default ();
    config.dir = dir;
    char *error = NULL;
    drover_journal_t *second = drover_journal_open (&config, &error);
    cr_assert_null (second, "opened a locked journal");
    char *expected =
        zsys_sprintf ("another process uses %s (%s/LOCK is locked)", dir, dir);
    cr_assert_str_eq (error, expected);
    free (expected);
    free (error);
    drover_journal_close (&first);
    second = drover_journal_open (&config, &error);
    cr_assert_not_null (second, "open after close: %s", error);
    drover_journal_close (&second);
    free (dir);
    s_rmtree (base);
}

//  Opening must fail with an error that names the file and says why
static void
s_check_refused (const char *dir, const char *file, const char *why)
{
    drover_journal_config_t config = drover_journal_config_default ();
    config.dir = dir;
    char *error = NULL;
    drover_journal_t *journal = drover_journal_open (&config, &error);
    cr_assert_null (journal, "opened a journal with a bad segment");
    cr_assert_not_null (error);
    cr_assert_neq (strstr (error, file), NULL, "error: %s", error);
    cr_assert_neq (strstr (error, why), NULL, "error: %s", error);
    free (error);
}

LEAK_CHECKED_TEST (journal, other_version_or_foreign_header_refused)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 2, 2);
    char *file = s_segment_file (dir, 1);
    size_t size;
    uint8_t *data = s_file_read (file, &size);
    s_file_put32 (file, 4, DROVER_JOURNAL_VERSION + 1);
    char version[64];
    snprintf (version, sizeof version, "format version %d",
              DROVER_JOURNAL_VERSION + 1);
    s_check_refused (dir, file, version);
    s_file_patch (file, 0, "DRVX", 4);
    s_check_refused (dir, file, "not a Drover journal segment");
    s_file_write (file, data, size);
    s_file_patch (file, 8, "\x07", 1); //  the segment number
    s_check_refused (dir, file, "damaged");
    s_file_write (file, data, size);
    cr_assert_eq (truncate (file, 10), 0);
    s_check_refused (dir, file, "too short");
    //  Whole again, it opens
    s_file_write (file, data, size);
    s_log_t log = {0};
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, &log, NULL);
    s_check_sequence (&log, 4, NULL, 0);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (data);
    free (file);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, append_before_replay_refused)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    s_write_segments (dir, 1, 2);
    drover_journal_t *journal = s_open (dir, 1u << 20, DROVER_FSYNC_ALWAYS);
    s_numbered_t record;
    s_numbered (&record, 2);
    cr_assert_eq (drover_journal_append (journal, record.frames, 3),
                  DROVER_EINVAL);
    cr_assert_neq (strstr (drover_journal_error (journal), "replay"), NULL,
                   "error: %s", drover_journal_error (journal));
    cr_assert_not (drover_journal_pending (journal));
    //  A replay stopped by its callback does not allow appends either
    s_log_t log = {0};
    log.stop_after = 1;
    cr_assert_eq (drover_journal_replay (journal, s_collect, &log, NULL), 7);
    cr_assert_eq (drover_journal_append (journal, record.frames, 3),
                  DROVER_EINVAL);
    s_log_free (&log);
    cr_assert_eq (drover_journal_replay (journal, s_collect, &log, NULL), 0);
    s_check_sequence (&log, 2, NULL, 0);
    cr_assert_eq (drover_journal_append (journal, record.frames, 3), 0);
    drover_journal_close (&journal);
    s_log_free (&log);
    journal = s_open_replayed (dir, 1u << 20, &log, NULL);
    s_check_sequence (&log, 3, NULL, 0);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, big_record_stays_in_one_segment)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    const uint64_t segment_size = 4096;
    size_t big_size = 64u << 10;
    uint8_t *big = (uint8_t *)malloc (big_size);
    cr_assert_not_null (big);
    for (size_t i = 0; i < big_size; i++)
        big[i] = (uint8_t)(i % 251);
    drover_frame_t frames[2] = {{"big", 3}, {big, big_size}};
    drover_journal_t *journal = s_open_replayed (dir, segment_size, NULL, NULL);
    s_append_numbered (journal, 0);
    cr_assert_eq (drover_journal_commit (journal, true), 0);
    cr_assert_eq (drover_journal_append (journal, frames, 2), 0);
    cr_assert_eq (drover_journal_commit (journal, true), 0);
    size_t big_record = RECORD_HEADER + 4 + 4 + 3 + 4 + big_size;
    cr_assert_eq (drover_journal_segment (journal), 1);
    cr_assert_eq (drover_journal_segment_size (journal, 1),
                  SEGMENT_HEADER + s_numbered_size (0) + big_record);
    //  The segment is full: the next record starts a new one
    s_append_numbered (journal, 1);
    cr_assert_eq (drover_journal_commit (journal, true), 0);
    cr_assert_eq (drover_journal_segment (journal), 2);
    drover_journal_close (&journal);

    s_log_t log = {0};
    journal = s_open_replayed (dir, segment_size, &log, NULL);
    cr_assert_eq (log.count, 3);
    s_check_numbered (&log.records[0], 0);
    cr_assert_eq (log.records[1].segment, 1);
    cr_assert_eq (log.records[1].count, 2);
    cr_assert (s_frame_is (&log.records[1].frames[1], big, big_size));
    s_check_numbered (&log.records[2], 1);
    cr_assert_eq (log.records[2].segment, 2);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (big);
    free (dir);
    s_rmtree (base);
}

LEAK_CHECKED_TEST (journal, fsync_policies_and_unsynced)
{
    char *base = s_tmpdir ();
    char *dir = s_journal_dir (base);
    drover_fsync_t policies[3] = {DROVER_FSYNC_NEVER, DROVER_FSYNC_ALWAYS,
                                  DROVER_FSYNC_BATCH};
    for (int p = 0; p < 3; p++) {
        drover_journal_config_t config = drover_journal_config_default ();
        config.dir = dir;
        config.fsync = policies[p];
        config.sync_interval_ms = 60000;
        char *error = NULL;
        drover_journal_t *journal = drover_journal_open (&config, &error);
        cr_assert_not_null (journal, "%s", error);
        cr_assert_eq (drover_journal_replay (journal, NULL, NULL, NULL), 0);
        s_append_numbered (journal, p);
        cr_assert_eq (drover_journal_commit (journal, false), 0);
        //  Only BATCH leaves a write waiting for its sync
        bool batch = policies[p] == DROVER_FSYNC_BATCH;
        cr_assert_eq (drover_journal_unsynced (journal), batch, "policy %d", p);
        cr_assert_eq (drover_journal_commit (journal, false), 0);
        cr_assert_eq (drover_journal_unsynced (journal), batch);
        cr_assert_eq (drover_journal_commit (journal, true), 0);
        cr_assert_not (drover_journal_unsynced (journal));
        drover_journal_close (&journal);
    }
    //  BATCH syncs by itself once sync_interval_ms has passed
    drover_journal_config_t config = drover_journal_config_default ();
    config.dir = dir;
    config.sync_interval_ms = 20;
    char *error = NULL;
    drover_journal_t *journal = drover_journal_open (&config, &error);
    cr_assert_not_null (journal, "%s", error);
    cr_assert_eq (drover_journal_replay (journal, NULL, NULL, NULL), 0);
    s_append_numbered (journal, 3);
    cr_assert_eq (drover_journal_commit (journal, false), 0);
    int64_t deadline = zclock_mono () + 5000;
    while (drover_journal_unsynced (journal) && zclock_mono () < deadline)
        cr_assert_eq (drover_journal_commit (journal, false), 0);
    cr_assert_not (drover_journal_unsynced (journal), "never synced");
    drover_journal_close (&journal);

    s_log_t log = {0};
    journal = s_open_replayed (dir, 1u << 20, &log, NULL);
    s_check_sequence (&log, 4, NULL, 0);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (dir);
    s_rmtree (base);
}

//  --------------------------------------------------------------------------
//  Full disks

//  A 256 KiB tmpfs on a new temporary directory, in a mount namespace of
//  this process only
static char *
s_tmpfs (void)
{
    cr_assert_eq (unshare (CLONE_NEWNS), 0,
                  "unshare (CLONE_NEWNS): %s: the disk-full tests must run "
                  "as root (CAP_SYS_ADMIN) to mount a tmpfs",
                  strerror (errno));
    //  The kernel ignores source and type here; "none" rather than NULL
    //  keeps valgrind from reading a NULL type string
    cr_assert_eq (mount ("none", "/", "none", MS_REC | MS_PRIVATE, NULL), 0,
                  "making mounts private: %s", strerror (errno));
    char *dir = s_tmpdir ();
    cr_assert_eq (mount ("tmpfs", dir, "tmpfs", 0, "size=256k"), 0,
                  "mount tmpfs on %s: %s", dir, strerror (errno));
    return dir;
}

static void
s_tmpfs_remove (char *dir)
{
    cr_assert_eq (umount2 (dir, MNT_DETACH), 0, "umount %s: %s", dir,
                  strerror (errno));
    cr_assert_eq (rmdir (dir), 0, "rmdir %s: %s", dir, strerror (errno));
    free (dir);
}

//  Writes path until the device is full
static void
s_fill (const char *path)
{
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert_neq (fd, -1, "open %s: %s", path, strerror (errno));
    uint8_t block[4096];
    memset (block, 0x5A, sizeof block);
    ssize_t done;
    while ((done = write (fd, block, sizeof block)) > 0)
        ;
    cr_assert_eq (errno, ENOSPC, "filling %s: %s", path, strerror (errno));
    close (fd);
}

//  A record that needs new pages on the full tmpfs
static void
s_append_big (drover_journal_t *journal)
{
    static uint8_t big[64u << 10];
    drover_frame_t frames[1] = {{big, sizeof big}};
    cr_assert_eq (drover_journal_append (journal, frames, 1), 0);
}

LEAK_CHECKED_TEST (journal, disk_full_commit_rolls_back)
{
    char *base = s_tmpfs ();
    char *dir = s_journal_dir (base);
    char *filler = zsys_sprintf ("%s/filler", base);
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, NULL, NULL);
    for (int i = 0; i < 3; i++)
        s_append_numbered (journal, i);
    cr_assert_eq (drover_journal_commit (journal, true), 0);
    uint64_t good = drover_journal_segment_size (journal, 1);
    char *file = s_segment_file (dir, 1);

    s_fill (filler);
    s_append_big (journal);
    cr_assert_eq (drover_journal_commit (journal, true), DROVER_ESTORAGE);
    const char *error = drover_journal_error (journal);
    cr_assert_neq (strstr (error, strerror (ENOSPC)), NULL, "error: %s", error);
    cr_assert_neq (strstr (error, file), NULL, "error: %s", error);
    cr_assert_not (drover_journal_pending (journal));
    cr_assert_eq (drover_journal_segment_size (journal, 1), good);
    cr_assert_eq (s_file_size (file), (off_t)good, "not rolled back");

    //  Space again: the journal goes on where it was
    cr_assert_eq (unlink (filler), 0);
    s_append_numbered (journal, 3);
    cr_assert_eq (drover_journal_commit (journal, true), 0, "%s",
                  drover_journal_error (journal));
    drover_journal_close (&journal);
    s_log_t log = {0};
    drover_journal_stats_t stats;
    journal = s_open_replayed (dir, 1u << 20, &log, &stats);
    s_check_sequence (&log, 4, NULL, 0);
    cr_assert_eq (stats.torn_bytes + stats.corrupt, 0);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (file);
    free (filler);
    free (dir);
    s_tmpfs_remove (base);
}

LEAK_CHECKED_TEST (journal, disk_full_replays_what_was_committed)
{
    char *base = s_tmpfs ();
    char *dir = s_journal_dir (base);
    char *filler = zsys_sprintf ("%s/filler", base);
    drover_journal_t *journal = s_open_replayed (dir, 1u << 20, NULL, NULL);
    for (int i = 0; i < 3; i++)
        s_append_numbered (journal, i);
    cr_assert_eq (drover_journal_commit (journal, true), 0);
    s_fill (filler);
    s_append_big (journal);
    cr_assert_eq (drover_journal_commit (journal, true), DROVER_ESTORAGE);
    drover_journal_close (&journal);

    //  A fresh open finds exactly what was committed, nothing torn
    s_log_t log = {0};
    drover_journal_stats_t stats;
    journal = s_open_replayed (dir, 1u << 20, &log, &stats);
    s_check_sequence (&log, 3, NULL, 0);
    cr_assert_eq (stats.torn_bytes + stats.corrupt, 0);
    s_log_free (&log);
    //  Still full: the fresh segment cannot be created, and no
    //  half-created one is left behind
    s_append_numbered (journal, 3);
    cr_assert_eq (drover_journal_commit (journal, true), DROVER_ESTORAGE);
    const char *error = drover_journal_error (journal);
    cr_assert_neq (strstr (error, strerror (ENOSPC)), NULL, "error: %s", error);
    cr_assert_neq (strstr (error, "0000000000000002.drj"), NULL, "error: %s",
                   error);
    cr_assert_not (s_dir_has (dir, ".tmp"), "a .tmp segment was left");
    //  Space again: the next commit creates it
    cr_assert_eq (unlink (filler), 0);
    s_append_numbered (journal, 3);
    cr_assert_eq (drover_journal_commit (journal, true), 0, "%s",
                  drover_journal_error (journal));
    cr_assert_eq (drover_journal_segment (journal), 2);
    drover_journal_close (&journal);
    journal = s_open_replayed (dir, 1u << 20, &log, &stats);
    s_check_sequence (&log, 4, NULL, 0);
    cr_assert_eq (log.records[3].segment, 2);
    drover_journal_close (&journal);
    s_log_free (&log);
    free (filler);
    free (dir);
    s_tmpfs_remove (base);
}
