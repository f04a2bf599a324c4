/*  drover_journal.c - the append-only, segmented journal of DTP messages.
    The on-disk format and its rules are in JOURNAL.md.

    Writing: append encodes each record into one in-memory buffer; commit
    hands the whole buffer to write() on the current segment (opened with
    O_APPEND) and fdatasync()s it when the policy says so. A segment's
    committed size moves only once all of that succeeded, so any failure
    is undone with one ftruncate() back to it.

    Reading: replay maps each segment read-only and walks its records. A
    record that does not validate starts a damaged region, which ends where
    the next whole valid record starts (found by scanning for the record
    magic and checking what follows). Nothing valid after it in the newest
    segment is a write torn by a crash: it is cut off. Anything else is a
    corrupt region: it is copied to DIR/corrupt/ and skipped.

    Segments are created under a temporary name and renamed once their
    header is on disk, so a segment file always has a whole header: a bad
    header is damage or a foreign file, never a crash, and open refuses it.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_journal.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

//  Segment header: "DRVJ", version u32, segment number u64, then the
//  CRC-32 of those 16 octets. All integers little-endian.
#define SEGMENT_MAGIC       "DRVJ"
#define SEGMENT_HEADER_SIZE 20
#define SEGMENT_SUFFIX      ".drj"
#define SEGMENT_NAME_SIZE   20 //  16 hex digits and the suffix
#define TMP_SUFFIX          ".tmp"

//  Record: magic, u32 body length, u32 CRC-32 of the body, then the body:
//  u32 frame count, and per frame a u32 size and its octets. 0xF5 never
//  occurs in UTF-8 and the rest is no common msgpack or text sequence, so
//  the magic is rare in payloads; a false hit must still pass the CRC.
static const uint8_t s_record_magic[4] = {0xF5, 0x9F, 0x4A, 0xD7};
#define RECORD_HEADER_SIZE 12

//  A commit buffer grown past this is freed after the commit, so that one
//  huge record does not pin its memory for the life of the journal
#define BUFFER_KEEP (4u << 20)

typedef struct {
    uint64_t number; //  segment number, as in its file name
    uint64_t size;   //  octets: header and committed records
} s_segment_t;

struct drover_journal_t {
    drover_journal_config_t config; //  a copy; config.dir is dir
    char *dir;                      //  the journal's directory
    int lock_fd;                    //  DIR/LOCK, flock()ed
    s_segment_t *segments;          //  on disk, oldest first
    size_t segment_count;           //  entries in segments
    size_t segment_max;             //  entries allocated
    uint64_t current;               //  the segment new records go to
    int fd;                         //  the current segment, or -1 while it is
                                    //  still to be created (by the next commit)
    bool replayed;                  //  replay ran to the end: appends allowed
    bool unsynced;                  //  a committed write waits for fdatasync
    int64_t synced_at;              //  zclock_mono () of the last fdatasync
    uint8_t *buffer;                //  encoded records, not yet committed
    size_t buffer_size;             //  octets in buffer
    size_t buffer_max;              //  octets allocated
    drover_frame_t *frames;         //  replay: the frames of one record
    size_t frame_max;               //  entries allocated
    char error[PATH_MAX + 256];     //  why the last failing call failed
};

//  --------------------------------------------------------------------------
//  Helpers

static void
s_put32 (uint8_t *out, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        out[i] = (uint8_t)(value >> (8 * i));
}

static void
s_put64 (uint8_t *out, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(value >> (8 * i));
}

static uint32_t
s_get32 (const uint8_t *in)
{
    return (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16
           | (uint32_t)in[3] << 24;
}

static uint64_t
s_get64 (const uint8_t *in)
{
    return (uint64_t)s_get32 (in) | (uint64_t)s_get32 (in + 4) << 32;
}

//  zlib's crc32(), fed at most 1 GiB at a time (its length is a uInt)
static uint32_t
s_crc (const uint8_t *data, size_t size)
{
    uLong crc = crc32 (0L, Z_NULL, 0);
    while (size > 0) {
        uInt chunk = size > (1u << 30) ? (1u << 30) : (uInt)size;
        crc = crc32 (crc, data, chunk);
        data += chunk;
        size -= chunk;
    }
    return (uint32_t)crc;
}

static int s_fail (drover_journal_t *self, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));

static int
s_fail (drover_journal_t *self, int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->error, sizeof self->error, format, args);
    va_end (args);
    return code;
}

//  write() all of it, through partial writes and signals. Returns 0, or -1
//  with errno set.
static int
s_write_all (int fd, const uint8_t *data, size_t size)
{
    while (size > 0) {
        ssize_t done = write (fd, data, size);
        if (done < 0 && errno == EINTR)
            continue;
        if (done < 0)
            return -1;
        if (done == 0) {
            //  No progress and no error: a full device by another name
            errno = ENOSPC;
            return -1;
        }
        data += done;
        size -= (size_t)done;
    }
    return 0;
}

static void
s_segment_path (drover_journal_t *self, uint64_t number, const char *suffix,
                char *path)
{
    snprintf (path, PATH_MAX, "%s/%016llx%s%s", self->dir,
              (unsigned long long)number, SEGMENT_SUFFIX, suffix);
}

//  fsync() the directory, so that files created, renamed or deleted in it
//  stay so after a power cut
static int
s_sync_dir (drover_journal_t *self)
{
    int fd = open (self->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd != -1 && fsync (fd) == 0) {
        close (fd);
        return 0;
    }
    int error = errno;
    if (fd != -1)
        close (fd);
    return s_fail (self, DROVER_ESTORAGE, "cannot sync directory %s: %s",
                   self->dir, strerror (error));
}

static void
s_segment_add (drover_journal_t *self, uint64_t number, uint64_t size)
{
    if (self->segment_count == self->segment_max) {
        self->segment_max = self->segment_max ? self->segment_max * 2 : 16;
        self->segments = (s_segment_t *)realloc (
            self->segments, self->segment_max * sizeof (s_segment_t));
        assert (self->segments);
    }
    self->segments[self->segment_count].number = number;
    self->segments[self->segment_count].size = size;
    self->segment_count++;
}

//  The segment the open fd writes to: always the last one on disk
static s_segment_t *
s_segment_current (drover_journal_t *self)
{
    assert (self->fd != -1 && self->segment_count > 0);
    return &self->segments[self->segment_count - 1];
}

static int
s_segment_compare (const void *a, const void *b)
{
    uint64_t x = ((const s_segment_t *)a)->number;
    uint64_t y = ((const s_segment_t *)b)->number;
    return x < y ? -1 : x > y;
}

//  --------------------------------------------------------------------------
//  Segment headers

static void
s_header_encode (uint8_t *header, uint64_t number)
{
    memcpy (header, SEGMENT_MAGIC, 4);
    s_put32 (header + 4, DROVER_JOURNAL_VERSION);
    s_put64 (header + 8, number);
    s_put32 (header + 16, s_crc (header, 16));
}

static int
s_header_verify (drover_journal_t *self, const uint8_t *header, uint64_t number,
                 const char *path)
{
    if (memcmp (header, SEGMENT_MAGIC, 4) != 0)
        return s_fail (self, DROVER_ESTORAGE,
                       "%s: not a Drover journal segment (no DRVJ magic); "
                       "move it out of %s",
                       path, self->dir);
    //  The version before the checksum: another version may lay out its
    //  header differently, and deserves a better message than "damaged"
    uint32_t version = s_get32 (header + 4);
    if (version != DROVER_JOURNAL_VERSION)
        return s_fail (self, DROVER_ESTORAGE,
                       "%s: journal format version %u; this program reads "
                       "version %d only (see JOURNAL.md)",
                       path, version, DROVER_JOURNAL_VERSION);
    if (s_get32 (header + 16) != s_crc (header, 16))
        return s_fail (self, DROVER_ESTORAGE,
                       "%s: segment header is damaged (checksum mismatch)",
                       path);
    if (s_get64 (header + 8) != number)
        return s_fail (self, DROVER_ESTORAGE,
                       "%s: its header says segment %llu, its name %llu", path,
                       (unsigned long long)s_get64 (header + 8),
                       (unsigned long long)number);
    return 0;
}

//  Reads and checks the header of a segment, and notes its size
static int
s_header_check (drover_journal_t *self, s_segment_t *segment)
{
    char path[PATH_MAX];
    s_segment_path (self, segment->number, "", path);
    uint8_t header[SEGMENT_HEADER_SIZE];
    struct stat info;
    ssize_t got = -1;
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd != -1 && fstat (fd, &info) == 0)
        got = pread (fd, header, sizeof header, 0);
    int error = errno;
    if (fd != -1)
        close (fd);
    if (got < 0)
        return s_fail (self, DROVER_ESTORAGE, "cannot read %s: %s", path,
                       strerror (error));
    if (got < SEGMENT_HEADER_SIZE)
        return s_fail (self, DROVER_ESTORAGE,
                       "%s: %zd octets, too short for a segment header "
                       "(damaged; move it out of %s)",
                       path, got, self->dir);
    segment->size = (uint64_t)info.st_size;
    return s_header_verify (self, header, segment->number, path);
}

//  --------------------------------------------------------------------------
//  Opening and closing

drover_journal_config_t
drover_journal_config_default (void)
{
    drover_journal_config_t config;
    config.dir = NULL;
    config.segment_size = 64u << 20;
    config.fsync = DROVER_FSYNC_BATCH;
    config.sync_interval_ms = 200;
    return config;
}

int
drover_journal_fsync_parse (const char *text, drover_fsync_t *fsync)
{
    assert (fsync);
    if (text && streq (text, "always"))
        *fsync = DROVER_FSYNC_ALWAYS;
    else if (text && streq (text, "batch"))
        *fsync = DROVER_FSYNC_BATCH;
    else if (text && streq (text, "never"))
        *fsync = DROVER_FSYNC_NEVER;
    else
        return DROVER_EINVAL;
    return 0;
}

//  Creates the directory if missing and takes the lock
static int
s_lock (drover_journal_t *self)
{
    if (mkdir (self->dir, 0755) != 0 && errno != EEXIST)
        return s_fail (self, DROVER_ESTORAGE, "cannot create directory %s: %s",
                       self->dir, strerror (errno));
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/LOCK", self->dir);
    self->lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (self->lock_fd == -1)
        return s_fail (self, DROVER_ESTORAGE, "cannot open %s: %s", path,
                       strerror (errno));
    //  flock, not fcntl locks: they belong to the open file, so a second
    //  open in the same process is refused too
    if (flock (self->lock_fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    if (errno == EWOULDBLOCK)
        return s_fail (self, DROVER_ESTORAGE,
                       "another process uses %s (%s is locked)", self->dir,
                       path);
    return s_fail (self, DROVER_ESTORAGE, "cannot lock %s: %s", path,
                   strerror (errno));
}

//  1: a segment, 2: a segment whose creation a crash interrupted, 0: some
//  other file
static int
s_parse_name (const char *name, uint64_t *number)
{
    if (strlen (name) < SEGMENT_NAME_SIZE)
        return 0;
    for (size_t i = 0; i < 16; i++)
        if (!strchr ("0123456789abcdef", name[i]))
            return 0;
    if (memcmp (name + 16, SEGMENT_SUFFIX, 4) != 0)
        return 0;
    *number = strtoull (name, NULL, 16);
    const char *rest = name + SEGMENT_NAME_SIZE;
    return *rest == 0 ? 1 : streq (rest, TMP_SUFFIX) ? 2 : 0;
}

//  Lists the segments, oldest first, and removes half-created ones
static int
s_scan_dir (drover_journal_t *self)
{
    DIR *handle = opendir (self->dir);
    if (!handle)
        return s_fail (self, DROVER_ESTORAGE, "cannot read directory %s: %s",
                       self->dir, strerror (errno));
    int rc = 0;
    while (rc == 0) {
        errno = 0;
        struct dirent *entry = readdir (handle);
        if (!entry) {
            if (errno)
                rc = s_fail (self, DROVER_ESTORAGE,
                             "cannot read directory %s: %s", self->dir,
                             strerror (errno));
            break;
        }
        uint64_t number;
        int kind = s_parse_name (entry->d_name, &number);
        if (kind == 1)
            s_segment_add (self, number, 0);
        else if (kind == 2 && unlinkat (dirfd (handle), entry->d_name, 0))
            rc = s_fail (self, DROVER_ESTORAGE, "cannot delete %s/%s: %s",
                         self->dir, entry->d_name, strerror (errno));
    }
    closedir (handle);
    if (self->segment_count > 1)
        qsort (self->segments, self->segment_count, sizeof (s_segment_t),
               s_segment_compare);
    return rc;
}

static void
s_destroy (drover_journal_t **self_p)
{
    drover_journal_t *self = *self_p;
    if (self->fd != -1)
        close (self->fd);
    //  Closing the lock file releases the lock; the file stays, so that
    //  nobody can lock a file another process is about to unlink
    if (self->lock_fd != -1)
        close (self->lock_fd);
    free (self->segments);
    free (self->buffer);
    free (self->frames);
    free (self->dir);
    free (self);
    *self_p = NULL;
}

drover_journal_t *
drover_journal_open (const drover_journal_config_t *config, char **error)
{
    assert (config);
    assert (error);
    *error = NULL;
    drover_journal_t *self = (drover_journal_t *)zmalloc (sizeof *self);
    assert (self);
    self->config = *config;
    self->dir = strdup (config->dir ? config->dir : "");
    assert (self->dir);
    self->config.dir = self->dir;
    self->lock_fd = -1;
    self->fd = -1;
    self->synced_at = zclock_mono ();
    int rc = 0;
    if (!*self->dir)
        rc = s_fail (self, DROVER_EINVAL, "journal: no directory given");
    else if (strlen (self->dir) > PATH_MAX - 64)
        rc = s_fail (self, DROVER_EINVAL, "journal: directory name too long");
    if (rc == 0)
        rc = s_lock (self);
    if (rc == 0)
        rc = s_scan_dir (self);
    for (size_t i = 0; rc == 0 && i < self->segment_count; i++)
        rc = s_header_check (self, &self->segments[i]);
    if (rc) {
        *error = strdup (self->error);
        assert (*error);
        s_destroy (&self);
        return NULL;
    }
    self->current = self->segment_count
                        ? self->segments[self->segment_count - 1].number + 1
                        : 1;
    return self;
}

void
drover_journal_close (drover_journal_t **self_p)
{
    assert (self_p);
    drover_journal_t *self = *self_p;
    if (!self)
        return;
    if (self->replayed && drover_journal_commit (self, true) != 0)
        zsys_error ("journal %s: at close: %s", self->dir, self->error);
    s_destroy (self_p);
}

//  --------------------------------------------------------------------------
//  Replay

typedef struct {
    const uint8_t *data; //  the mapped segment
    size_t size;         //  its size
    uint64_t number;     //  its number
    bool newest;         //  the last segment on disk
    size_t end;          //  where the torn tail starts, or size
    const char *why;     //  what is wrong with the torn tail
} s_scan_t;

//  True when the frame sizes in a body account for exactly its length
static bool
s_frames_add_up (const uint8_t *body, uint32_t length)
{
    uint32_t count = s_get32 (body);
    uint32_t offset = 4;
    for (uint32_t i = 0; i < count; i++) {
        if (length - offset < 4)
            return false;
        uint32_t size = s_get32 (body + offset);
        offset += 4;
        if (size > length - offset)
            return false;
        offset += size;
    }
    return offset == length;
}

//  Returns the size of the valid record at offset, or 0 with *why set
static size_t
s_record_check (const uint8_t *data, size_t size, size_t offset,
                const char **why)
{
    const uint8_t *record = data + offset;
    size_t left = size - offset;
    if (left < RECORD_HEADER_SIZE) {
        *why = "record header cut short";
        return 0;
    }
    if (memcmp (record, s_record_magic, sizeof s_record_magic) != 0) {
        *why = "no record magic";
        return 0;
    }
    //  A u32 cannot say more than 4 GiB; past the end of the file or too
    //  short for a frame count is impossible too
    uint32_t length = s_get32 (record + 4);
    if (length < 4 || length > left - RECORD_HEADER_SIZE) {
        *why = "impossible length";
        return 0;
    }
    const uint8_t *body = record + RECORD_HEADER_SIZE;
    if (s_crc (body, length) != s_get32 (record + 8)) {
        *why = "checksum mismatch";
        return 0;
    }
    if (!s_frames_add_up (body, length)) {
        *why = "frame table does not add up";
        return 0;
    }
    return RECORD_HEADER_SIZE + (size_t)length;
}

//  The offset of the next valid record after a damaged one, or the end
static size_t
s_resync (const s_scan_t *scan, size_t from)
{
    while (from < scan->size) {
        const uint8_t *hit =
            (const uint8_t *)memmem (scan->data + from, scan->size - from,
                                     s_record_magic, sizeof s_record_magic);
        if (!hit)
            break;
        size_t offset = (size_t)(hit - scan->data);
        const char *why;
        if (s_record_check (scan->data, scan->size, offset, &why))
            return offset;
        from = offset + 1;
    }
    return scan->size;
}

//  Hands a valid record's frames to fn
static int
s_deliver (drover_journal_t *self, const s_scan_t *scan, size_t offset,
           drover_journal_replay_fn *fn, void *arg)
{
    const uint8_t *body = scan->data + offset + RECORD_HEADER_SIZE;
    size_t count = s_get32 (body);
    if (count > self->frame_max) {
        self->frames = (drover_frame_t *)realloc (
            self->frames, count * sizeof (drover_frame_t));
        assert (self->frames);
        self->frame_max = count;
    }
    size_t at = 4;
    for (size_t i = 0; i < count; i++) {
        self->frames[i].size = s_get32 (body + at);
        self->frames[i].data = body + at + 4;
        at += 4 + self->frames[i].size;
    }
    return fn ? fn (self->frames, count, scan->number, arg) : 0;
}

//  Copies a damaged region to DIR/corrupt/SEGMENT-OFFSET.bin
static int
s_set_aside (drover_journal_t *self, const s_scan_t *scan, size_t offset,
             size_t size, const char *why)
{
    char path[PATH_MAX];
    snprintf (path, sizeof path, "%s/corrupt", self->dir);
    if (mkdir (path, 0755) != 0 && errno != EEXIST)
        return s_fail (self, DROVER_ESTORAGE, "cannot create directory %s: %s",
                       path, strerror (errno));
    snprintf (path, sizeof path, "%s/corrupt/%016llx-%zu.bin", self->dir,
              (unsigned long long)scan->number, offset);
    int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1 || s_write_all (fd, scan->data + offset, size) != 0
        || fdatasync (fd) != 0) {
        int error = errno;
        if (fd != -1)
            close (fd);
        return s_fail (self, DROVER_ESTORAGE,
                       "cannot set damaged journal data aside in %s: %s", path,
                       strerror (error));
    }
    close (fd);
    zsys_warning ("journal %s: segment %016llx: %zu damaged octets at offset "
                  "%zu (%s), set aside in %s; replay goes on after them",
                  self->dir, (unsigned long long)scan->number, size, offset,
                  why, path);
    return 0;
}

//  Walks the records of one mapped segment
static int
s_replay_records (drover_journal_t *self, s_scan_t *scan,
                  drover_journal_replay_fn *fn, void *arg,
                  drover_journal_stats_t *stats)
{
    size_t offset = SEGMENT_HEADER_SIZE;
    while (offset < scan->size) {
        const char *why = NULL;
        size_t record = s_record_check (scan->data, scan->size, offset, &why);
        if (record) {
            stats->records++;
            int rc = s_deliver (self, scan, offset, fn, arg);
            if (rc)
                return rc;
            offset += record;
            continue;
        }
        size_t next = s_resync (scan, offset + 1);
        if (next == scan->size && scan->newest) {
            //  Nothing valid follows: the end of the last write, torn
            scan->end = offset;
            scan->why = why;
            stats->torn_bytes += scan->size - offset;
            return 0;
        }
        int rc = s_set_aside (self, scan, offset, next - offset, why);
        if (rc)
            return rc;
        stats->corrupt++;
        stats->corrupt_bytes += next - offset;
        offset = next;
    }
    return 0;
}

static int
s_cut_tail (drover_journal_t *self, int fd, const char *path,
            const s_scan_t *scan)
{
    if (ftruncate (fd, (off_t)scan->end) != 0 || fdatasync (fd) != 0)
        return s_fail (self, DROVER_ESTORAGE,
                       "cannot cut the torn end off %s: %s", path,
                       strerror (errno));
    zsys_warning ("journal %s: cut %zu octets off the end of %s (a write torn "
                  "by a crash: %s)",
                  self->dir, scan->size - scan->end, path, scan->why);
    return 0;
}

static int
s_replay_segment (drover_journal_t *self, size_t index,
                  drover_journal_replay_fn *fn, void *arg,
                  drover_journal_stats_t *stats)
{
    s_segment_t *segment = &self->segments[index];
    s_scan_t scan = {
        NULL, 0, segment->number, index + 1 == self->segment_count, 0, NULL};
    char path[PATH_MAX];
    s_segment_path (self, segment->number, "", path);
    //  Only the newest segment may have a torn end to cut off
    int fd = open (path, (scan.newest ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    struct stat info;
    if (fd == -1 || fstat (fd, &info) != 0) {
        int error = errno;
        if (fd != -1)
            close (fd);
        return s_fail (self, DROVER_ESTORAGE, "cannot open %s: %s", path,
                       strerror (error));
    }
    scan.size = scan.end = (size_t)info.st_size;
    void *map = MAP_FAILED;
    if (scan.size >= SEGMENT_HEADER_SIZE)
        map = mmap (NULL, scan.size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        int error = scan.size < SEGMENT_HEADER_SIZE ? EINVAL : errno;
        close (fd);
        return s_fail (self, DROVER_ESTORAGE, "cannot map %s: %s", path,
                       strerror (error));
    }
    scan.data = (const uint8_t *)map;
    stats->segments++;
    stats->bytes += scan.size;
    int rc = s_replay_records (self, &scan, fn, arg, stats);
    munmap (map, scan.size);
    if (rc == 0 && scan.end < scan.size)
        rc = s_cut_tail (self, fd, path, &scan);
    if (rc == 0)
        segment->size = scan.end;
    close (fd);
    return rc;
}

int
drover_journal_replay (drover_journal_t *self, drover_journal_replay_fn *fn,
                       void *arg, drover_journal_stats_t *stats)
{
    assert (self);
    assert (!self->replayed);
    drover_journal_stats_t ignored;
    if (!stats)
        stats = &ignored;
    memset (stats, 0, sizeof *stats);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < self->segment_count; i++)
        rc = s_replay_segment (self, i, fn, arg, stats);
    free (self->frames);
    self->frames = NULL;
    self->frame_max = 0;
    //  A stopped or failed replay may be run again; only a whole one
    //  allows appends. The fresh segment is created by the first commit.
    self->replayed = rc == 0;
    return rc;
}

//  --------------------------------------------------------------------------
//  Appending

//  The body length of a record of these frames, false if over 4 GiB
static bool
s_body_length (const drover_frame_t *frames, size_t count, uint64_t *length)
{
    uint64_t total = 4;
    for (size_t i = 0; i < count; i++) {
        uint64_t room = (uint64_t)UINT32_MAX - total;
        if (room < 4 || frames[i].size > room - 4)
            return false;
        total += 4 + frames[i].size;
    }
    *length = total;
    return true;
}

//  Room for size more octets at the end of the buffer
static uint8_t *
s_buffer_grow (drover_journal_t *self, size_t size)
{
    size_t need = self->buffer_size + size;
    if (need > self->buffer_max) {
        size_t max = self->buffer_max ? self->buffer_max : 64u << 10;
        while (max < need)
            max = max > SIZE_MAX / 2 ? need : max * 2;
        self->buffer = (uint8_t *)realloc (self->buffer, max);
        assert (self->buffer);
        self->buffer_max = max;
    }
    return self->buffer + self->buffer_size;
}

static void
s_buffer_drop (drover_journal_t *self)
{
    self->buffer_size = 0;
    if (self->buffer_max > BUFFER_KEEP) {
        free (self->buffer);
        self->buffer = NULL;
        self->buffer_max = 0;
    }
}

int
drover_journal_append (drover_journal_t *self, const drover_frame_t *frames,
                       size_t frame_count)
{
    assert (self);
    assert (frames || frame_count == 0);
    if (!self->replayed)
        return s_fail (self, DROVER_EINVAL,
                       "journal %s: append before replay (call "
                       "drover_journal_replay first)",
                       self->dir);
    uint64_t length;
    if (!s_body_length (frames, frame_count, &length))
        return s_fail (self, DROVER_ETOOBIG,
                       "journal %s: a record of %zu frames is over 4 GiB",
                       self->dir, frame_count);
    uint8_t *record = s_buffer_grow (self, RECORD_HEADER_SIZE + length);
    uint8_t *body = record + RECORD_HEADER_SIZE;
    s_put32 (body, (uint32_t)frame_count);
    size_t at = 4;
    for (size_t i = 0; i < frame_count; i++) {
        s_put32 (body + at, (uint32_t)frames[i].size);
        at += 4;
        if (frames[i].size)
            memcpy (body + at, frames[i].data, frames[i].size);
        at += frames[i].size;
    }
    memcpy (record, s_record_magic, sizeof s_record_magic);
    s_put32 (record + 4, (uint32_t)length);
    s_put32 (record + 8, s_crc (body, length));
    self->buffer_size += RECORD_HEADER_SIZE + length;
    return 0;
}

int
drover_journal_append_msg (drover_journal_t *self, drover_msg_t *msg)
{
    assert (self);
    assert (msg);
    uint8_t *header;
    size_t header_size;
    int rc = drover_msg_encode (msg, &header, &header_size);
    if (rc)
        return s_fail (self, rc, "journal %s: cannot encode message: %s",
                       self->dir, drover_msg_error (msg));
    //  The frames as they travel, so that replay can hand them to
    //  drover_msg_decode as they are, signature (DTP version) included
    size_t payloads =
        drover_command_has_payloads (msg->command) ? msg->task_count : 0;
    drover_frame_t *frames =
        (drover_frame_t *)malloc ((3 + payloads) * sizeof (drover_frame_t));
    assert (frames);
    uint8_t command = (uint8_t)msg->command;
    frames[0].data = DROVER_SIGNATURE;
    frames[0].size = DROVER_SIGNATURE_SIZE;
    frames[1].data = &command;
    frames[1].size = 1;
    frames[2].data = header;
    frames[2].size = header_size;
    for (size_t i = 0; i < payloads; i++) {
        frames[3 + i].data = msg->tasks[i].payload.data;
        frames[3 + i].size = msg->tasks[i].payload.size;
    }
    rc = drover_journal_append (self, frames, 3 + payloads);
    free (frames);
    free (header);
    return rc;
}

//  --------------------------------------------------------------------------
//  Committing and segments

//  Whether this commit must reach the disk before it returns
static bool
s_sync_wanted (drover_journal_t *self, bool sync)
{
    switch (self->config.fsync) {
        case DROVER_FSYNC_NEVER: return false;
        case DROVER_FSYNC_ALWAYS: return true;
        default:
            return sync
                   || zclock_mono () - self->synced_at
                          >= (int64_t)self->config.sync_interval_ms;
    }
}

//  Syncs and closes the current segment; new records go to the next one
static int
s_segment_finish (drover_journal_t *self)
{
    if (self->config.fsync != DROVER_FSYNC_NEVER && fdatasync (self->fd)) {
        int error = errno;
        char path[PATH_MAX];
        s_segment_path (self, self->current, "", path);
        return s_fail (self, DROVER_ESTORAGE, "cannot sync %s: %s", path,
                       strerror (error));
    }
    close (self->fd);
    self->fd = -1;
    self->unsynced = false;
    self->synced_at = zclock_mono ();
    self->current++;
    return 0;
}

//  Creates segment `current`: header written and synced under a temporary
//  name, then renamed, so that no crash leaves a segment without a header
static int
s_segment_create (drover_journal_t *self)
{
    char path[PATH_MAX], temporary[PATH_MAX];
    s_segment_path (self, self->current, "", path);
    s_segment_path (self, self->current, TMP_SUFFIX, temporary);
    uint8_t header[SEGMENT_HEADER_SIZE];
    s_header_encode (header, self->current);
    int fd = open (temporary,
                   O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd == -1)
        return s_fail (self, DROVER_ESTORAGE, "cannot create %s: %s", temporary,
                       strerror (errno));
    if (s_write_all (fd, header, sizeof header) != 0 || fdatasync (fd) != 0
        || rename (temporary, path) != 0) {
        int error = errno;
        close (fd);
        unlink (temporary);
        return s_fail (self, DROVER_ESTORAGE, "cannot create %s: %s", path,
                       strerror (error));
    }
    //  If this fails, the file may stay: it holds only a header, and the
    //  next try renames a new one over it
    int rc = s_sync_dir (self);
    if (rc) {
        close (fd);
        return rc;
    }
    self->fd = fd;
    s_segment_add (self, self->current, SEGMENT_HEADER_SIZE);
    return 0;
}

//  Undoes a failed commit: cuts the segment back to its last good end
static int
s_rollback (drover_journal_t *self, const char *what, int error)
{
    s_segment_t *segment = s_segment_current (self);
    char path[PATH_MAX];
    s_segment_path (self, segment->number, "", path);
    if (ftruncate (self->fd, (off_t)segment->size) == 0)
        return s_fail (self, DROVER_ESTORAGE, "cannot %s %s: %s", what, path,
                       strerror (error));
    //  Its end stays damaged: give the segment up, so that no good record
    //  follows the damage in it, and replay sets it aside
    int cut_error = errno;
    close (self->fd);
    self->fd = -1;
    self->unsynced = false;
    self->current++;
    return s_fail (self, DROVER_ESTORAGE,
                   "cannot %s %s: %s (nor cut it back to %llu octets: %s)",
                   what, path, strerror (error),
                   (unsigned long long)segment->size, strerror (cut_error));
}

static int
s_write_buffer (drover_journal_t *self, bool sync)
{
    if (s_write_all (self->fd, self->buffer, self->buffer_size) != 0)
        return s_rollback (self, "write", errno);
    if (s_sync_wanted (self, sync)) {
        if (fdatasync (self->fd) != 0)
            return s_rollback (self, "sync", errno);
        self->unsynced = false;
        self->synced_at = zclock_mono ();
    }
    else if (self->config.fsync == DROVER_FSYNC_BATCH)
        self->unsynced = true;
    s_segment_current (self)->size += self->buffer_size;
    return 0;
}

int
drover_journal_commit (drover_journal_t *self, bool sync)
{
    assert (self);
    if (self->buffer_size == 0) {
        if (!self->unsynced || !s_sync_wanted (self, sync))
            return 0;
        //  Nothing to undo here: the unsynced writes were committed
        if (fdatasync (self->fd) != 0) {
            char path[PATH_MAX];
            s_segment_path (self, self->current, "", path);
            return s_fail (self, DROVER_ESTORAGE, "cannot sync %s: %s", path,
                           strerror (errno));
        }
        self->unsynced = false;
        self->synced_at = zclock_mono ();
        return 0;
    }
    int rc = 0;
    if (self->fd != -1
        && s_segment_current (self)->size >= self->config.segment_size)
        rc = s_segment_finish (self);
    if (rc == 0 && self->fd == -1)
        rc = s_segment_create (self);
    if (rc == 0)
        rc = s_write_buffer (self, sync);
    //  Written or rolled back: either way these records are done with
    s_buffer_drop (self);
    return rc;
}

bool
drover_journal_pending (drover_journal_t *self)
{
    assert (self);
    return self->buffer_size > 0;
}

bool
drover_journal_unsynced (drover_journal_t *self)
{
    assert (self);
    return self->unsynced;
}

int
drover_journal_rotate (drover_journal_t *self)
{
    assert (self);
    assert (self->replayed);
    //  What was appended before belongs to the segment being closed
    int rc = drover_journal_commit (self, false);
    if (rc == 0 && self->fd != -1)
        rc = s_segment_finish (self);
    if (rc == 0)
        rc = s_segment_create (self);
    return rc;
}

uint64_t
drover_journal_segment (drover_journal_t *self)
{
    assert (self);
    return self->current;
}

uint64_t
drover_journal_oldest (drover_journal_t *self)
{
    assert (self);
    return self->segment_count ? self->segments[0].number : self->current;
}

int
drover_journal_drop_before (drover_journal_t *self, uint64_t segment)
{
    assert (self);
    assert (self->replayed);
    if (segment > self->current)
        segment = self->current;
    int rc = 0;
    size_t kept = 0;
    bool dropped = false;
    //  Oldest first, and none after a failure: what stays has no gaps
    for (size_t i = 0; i < self->segment_count; i++) {
        s_segment_t entry = self->segments[i];
        if (rc == 0 && entry.number < segment) {
            char path[PATH_MAX];
            s_segment_path (self, entry.number, "", path);
            if (unlink (path) == 0 || errno == ENOENT) {
                dropped = true;
                continue;
            }
            rc = s_fail (self, DROVER_ESTORAGE, "cannot delete %s: %s", path,
                         strerror (errno));
        }
        self->segments[kept++] = entry;
    }
    self->segment_count = kept;
    if (dropped) {
        int sync_rc = s_sync_dir (self);
        rc = rc ? rc : sync_rc;
    }
    return rc;
}

uint64_t
drover_journal_size (drover_journal_t *self)
{
    assert (self);
    uint64_t size = 0;
    for (size_t i = 0; i < self->segment_count; i++)
        size += self->segments[i].size;
    return size;
}

uint64_t
drover_journal_segment_size (drover_journal_t *self, uint64_t segment)
{
    assert (self);
    for (size_t i = 0; i < self->segment_count; i++)
        if (self->segments[i].number == segment)
            return self->segments[i].size;
    return 0;
}

const char *
drover_journal_error (drover_journal_t *self)
{
    assert (self);
    return self->error;
}

const char *
drover_journal_dir (drover_journal_t *self)
{
    assert (self);
    return self->dir;
}
