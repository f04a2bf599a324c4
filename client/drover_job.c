/*  drover_job.c - the job log of a resumable map.

    Open replays the journal once: the first record must describe the same
    job; SUBMITTED records fill a table indexed by input (task id and
    digest), RESULT records find their input through a hash table of the
    ids still waiting for a result and are copied to a spool file, so that
    the table keeps only where each result lies. Lookups then read each
    result back once, when its input comes.

    During the run every record is appended to the journal's buffer; the
    map flushes (write, no sync) after each round of network work, and
    syncs before it hands back a result whose record was not synced yet,
    so one fdatasync covers every result that came meanwhile.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_job.h"
#include "drover_chunk.h"
#include "drover_client_internal.h"
#include "drover_journal.h"
#include "id_map.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <unistd.h>

#define JOB_FORMAT     1                      //  ref of the first record
#define JOB_KEY_PREFIX "drover-map-job"       //  its key starts so
#define JOB_RUN_MAX    (DROVER_MAX_BATCH / 2) //  inputs per SUBMITTED
#define JOB_MAX_INDEX  (UINT64_C (1) << 40)   //  inputs a log may name

//  What the log knows of one input.
typedef struct {
    uint64_t id;     //  its task id; 0: none (or run it again)
    uint64_t digest; //  digest of the input; 0: not known
    uint64_t spool;  //  1 + offset of its result in the spool; 0: none
} s_entry_t;

//  A result in the spool: this head, then reason_size octets of reason
//  and node_size of node (each with its NUL; 0: NULL), then the payload.
typedef struct {
    uint64_t id;
    uint64_t elapsed_us;
    uint64_t cpu_us;
    uint64_t max_rss_kb;
    uint64_t payload_size;
    int32_t code;
    int32_t signal;
    int32_t exit_status;
    uint32_t attempt;
    uint32_t reason_size;
    uint32_t node_size;
} s_spool_head_t;

struct drover_job_t {
    char *dir;                         //  the log's directory
    drover_journal_t *journal;         //  the log
    const drover_job_config_t *config; //  during open only
    drover_job_stats_t stats;          //  what open found
    s_entry_t *entries;                //  by input index, stats.known
    uint64_t capacity;                 //  entries allocated
    id_map_t *pending;                 //  replay: id -> index + 1
    bool described;                    //  replay saw the first record
    int spool_fd;                      //  copies of logged results, or -1
    FILE *spool;                       //  replay: writes to spool_fd
    uint64_t spool_size;               //  octets in the spool
    uint64_t appended;                 //  results logged this run
    uint64_t synced;                   //  of which synced
    bool refused;                      //  the log is another job's
    int replay_error;                  //  what stopped the replay
    uint64_t ids[2 * JOB_RUN_MAX];     //  scratch: a SUBMITTED's ids
    char error[DROVER_MAX_TEXT];       //  why the last call failed
};

static int s_fail (drover_job_t *self, int code, const char *format, ...)
    __attribute__ ((format (printf, 3, 4)));
static int
s_fail (drover_job_t *self, int code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->error, sizeof self->error, format, args);
    va_end (args);
    return code;
}

uint64_t
drover_job_digest (const void *data, size_t size)
{
    //  FNV-1a, 64 bits, then the size: tells inputs apart, not an
    //  adversary's
    uint64_t hash = UINT64_C (14695981039346656037);
    const unsigned char *octet = (const unsigned char *)data;
    for (size_t i = 0; i < size; i++) {
        hash ^= octet[i];
        hash *= UINT64_C (1099511628211);
    }
    hash ^= (uint64_t)size * UINT64_C (0x9E3779B97F4A7C15);
    return hash ? hash : 1;
}

//  --------------------------------------------------------------------------
//  The first record: what the job is

//  The key of the first record: ordering and separator, in words.
static void
s_job_key (const drover_job_config_t *config, char *key, size_t size)
{
    int length = snprintf (key, size, "%s ordered=%s input=%s", JOB_KEY_PREFIX,
                           config->ordered ? "yes" : "no",
                           config->nul_separated ? "nul" : "lines");
    //  Jobs without chunks keep the key they always had
    if (config->chunksize > 1 && length > 0 && (size_t)length < size)
        snprintf (key + length, size - (size_t)length, " chunks=%" PRIu32,
                  config->chunksize);
}

//  The job in words, for refusals.
static void
s_job_describe (const char *handler, const char *queue, const char *key,
                char *text, size_t size)
{
    bool ordered = key && strstr (key, "ordered=yes");
    bool nul = key && strstr (key, "input=nul");
    const char *chunks = key ? strstr (key, " chunks=") : NULL;
    char chunking[32] = "one input per task";
    if (chunks)
        snprintf (chunking, sizeof chunking, "--chunksize %.12s", chunks + 8);
    snprintf (text, size, "handler '%s', queue '%s', %s, %s, %s", handler,
              queue ? queue : "default",
              ordered ? "in input order (--ordered)" : "unordered",
              nul ? "NUL-separated inputs (-0)" : "one input per line",
              chunking);
}

static int
s_describe (drover_job_t *self)
{
    const drover_job_config_t *config = self->config;
    char key[128];
    s_job_key (config, key, sizeof key);
    drover_task_t task = {.handler = config->handler, .key = key};
    drover_task_options_apply (config->task, &task);
    task.queue = config->queue;
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_SUBMIT);
    msg.ref = JOB_FORMAT;
    msg.tasks = &task;
    msg.task_count = 1;
    int rc = drover_journal_append_msg (self->journal, &msg);
    if (rc)
        return s_fail (self, rc, "cannot describe the job: %s",
                       drover_msg_error (&msg));
    if (drover_journal_commit (self->journal, true))
        return s_fail (self, DROVER_ESTORAGE, "cannot write the job log: %s",
                       drover_journal_error (self->journal));
    return 0;
}

//  Replay: the first record must describe this job.
static int
s_replay_description (drover_job_t *self, drover_msg_t *msg)
{
    const drover_job_config_t *config = self->config;
    if (msg->command != DROVER_SUBMIT || msg->ref != JOB_FORMAT
        || msg->task_count != 1 || !msg->tasks[0].key
        || strncmp (msg->tasks[0].key, JOB_KEY_PREFIX,
                    strlen (JOB_KEY_PREFIX))) {
        self->refused = true;
        return s_fail (self, DROVER_EINVAL,
                       "%s holds a journal that is not a drover map job log "
                       "(its first record is %s): use another --job "
                       "directory",
                       self->dir, drover_command_name (msg->command));
    }
    const drover_task_t *job = &msg->tasks[0];
    char key[128];
    s_job_key (config, key, sizeof key);
    const char *queue = config->queue ? config->queue : "default";
    const char *job_queue = job->queue ? job->queue : "default";
    if (strcmp (job->handler, config->handler) || strcmp (job_queue, queue)
        || strcmp (job->key, key)) {
        char was[600], now[600];
        s_job_describe (job->handler, job_queue, job->key, was, sizeof was);
        s_job_describe (config->handler, queue, key, now, sizeof now);
        self->refused = true;
        return s_fail (self, DROVER_EINVAL,
                       "the job log in %s is for %s; this run asks for %s: "
                       "run it with the job's handler and options, or use a "
                       "new --job directory",
                       self->dir, was, now);
    }
    self->described = true;
    return 0;
}

//  --------------------------------------------------------------------------
//  Replay

//  Makes entries[0 .. count) exist.
static int
s_grow (drover_job_t *self, uint64_t count)
{
    if (count > JOB_MAX_INDEX)
        return s_fail (self, DROVER_ETOOBIG,
                       "the job log names input %" PRIu64 ", over the "
                       "limit of %" PRIu64,
                       count - 1, JOB_MAX_INDEX);
    if (count > self->capacity) {
        uint64_t capacity = self->capacity ? self->capacity : 1024;
        while (capacity < count)
            capacity *= 2;
        s_entry_t *entries = (s_entry_t *)realloc (
            self->entries, (size_t)capacity * sizeof (s_entry_t));
        if (!entries)
            return s_fail (self, DROVER_ENOMEM,
                           "out of memory replaying the job log (%" PRIu64
                           " inputs)",
                           count);
        memset (entries + self->capacity, 0,
                (size_t)(capacity - self->capacity) * sizeof (s_entry_t));
        self->entries = entries;
        self->capacity = capacity;
    }
    if (count > self->stats.known)
        self->stats.known = count;
    return 0;
}

static int
s_replay_submitted (drover_job_t *self, drover_msg_t *msg)
{
    if (msg->id_count == 0 || msg->id_count % 2)
        return 0; //  not ours: ignored
    size_t count = msg->id_count / 2;
    uint64_t first = msg->ref;
    if (first >= JOB_MAX_INDEX)
        return s_grow (self, first + 1);
    int rc = s_grow (self, first + count);
    for (size_t i = 0; i < count && rc == 0; i++) {
        s_entry_t *entry = &self->entries[first + i];
        if (entry->spool)
            continue; //  it has its result already
        if (entry->id)
            id_map_remove (self->pending, entry->id);
        entry->id = msg->ids[i];
        entry->digest = msg->ids[count + i];
        rc = id_map_try_set (self->pending, entry->id,
                             (void *)(uintptr_t)(first + i + 1));
        if (rc)
            rc = s_fail (self, rc, "out of memory replaying the job log");
    }
    return rc;
}

static int
s_spool_write (drover_job_t *self, const drover_task_t *item,
               uint64_t *offset_p)
{
    if (self->spool_fd < 0) {
        //  Unnamed, in the job's directory (not /tmp, often memory): it
        //  goes away with the process
        self->spool_fd = open (self->dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (self->spool_fd < 0) {
            char *path = zsys_sprintf ("%s/.spool-XXXXXX", self->dir);
            if (path) {
                self->spool_fd = mkostemp (path, O_CLOEXEC);
                if (self->spool_fd >= 0)
                    unlink (path);
            }
            zstr_free (&path);
        }
        if (self->spool_fd >= 0)
            self->spool = fdopen (dup (self->spool_fd), "w");
        if (!self->spool)
            return s_fail (self, DROVER_EIO,
                           "cannot make a spool file in %s: %s", self->dir,
                           strerror (errno));
    }
    s_spool_head_t head = {
        .id = item->id,
        .elapsed_us = item->elapsed_us,
        .cpu_us = item->cpu_us,
        .max_rss_kb = item->max_rss_kb,
        .payload_size = item->payload.size,
        .code = item->code,
        .signal = item->signal,
        .exit_status = item->exit_status,
        .attempt = item->attempt,
        .reason_size = item->reason ? (uint32_t)strlen (item->reason) + 1 : 0,
        .node_size = item->node ? (uint32_t)strlen (item->node) + 1 : 0,
    };
    fwrite (&head, sizeof head, 1, self->spool);
    if (head.reason_size)
        fwrite (item->reason, head.reason_size, 1, self->spool);
    if (head.node_size)
        fwrite (item->node, head.node_size, 1, self->spool);
    if (head.payload_size)
        fwrite (item->payload.data, head.payload_size, 1, self->spool);
    if (ferror (self->spool))
        return s_fail (self, DROVER_EIO, "cannot write a spool file in %s: %s",
                       self->dir, strerror (errno));
    *offset_p = self->spool_size;
    self->spool_size +=
        sizeof head + head.reason_size + head.node_size + head.payload_size;
    return 0;
}

//  A failure: the task's, or (a chunk's result) that of any of its inputs.
//  A chunk result that cannot be read counts as one: it runs again.
static bool
s_failed (drover_job_t *self, const drover_task_t *item)
{
    if (item->code)
        return true;
    return self->config->chunksize > 1
           && drover_chunk_failures (item->payload.data, item->payload.size)
                  != 0;
}

static int
s_replay_result (drover_job_t *self, drover_msg_t *msg)
{
    for (size_t i = 0; i < msg->task_count; i++) {
        const drover_task_t *item = &msg->tasks[i];
        uint64_t index =
            (uint64_t)(uintptr_t)id_map_remove (self->pending, item->id);
        if (index-- == 0)
            continue; //  a superseded id, or a second result
        s_entry_t *entry = &self->entries[index];
        if (item->code == DROVER_ECANCELLED
            || (self->config->retry_failed && s_failed (self, item))) {
            entry->id = 0; //  runs again, as a new task
            continue;
        }
        uint64_t offset = 0;
        int rc = s_spool_write (self, item, &offset);
        if (rc)
            return rc;
        entry->spool = offset + 1;
        self->stats.results++;
        if (item->code)
            self->stats.failed++;
    }
    return 0;
}

static int
s_replay_record (const drover_frame_t *frames, size_t frame_count,
                 uint64_t segment, void *arg)
{
    drover_job_t *self = (drover_job_t *)arg;
    drover_msg_t msg;
    drover_msg_init (&msg, 0);
    if (drover_msg_decode (&msg, frames, frame_count)) {
        zsys_warning ("drover map: job log %s, segment %" PRIu64
                      ": a record is no valid message (%s): skipped",
                      self->dir, segment, drover_msg_error (&msg));
        return 0;
    }
    self->stats.records++;
    int rc = 0;
    if (!self->described)
        rc = s_replay_description (self, &msg);
    else if (msg.command == DROVER_SUBMITTED)
        rc = s_replay_submitted (self, &msg);
    else if (msg.command == DROVER_RESULT)
        rc = s_replay_result (self, &msg);
    drover_msg_reset (&msg);
    self->replay_error = rc;
    return rc;
}

//  --------------------------------------------------------------------------
//  Public API

drover_job_t *
drover_job_open (const drover_job_config_t *config, bool *refused_p,
                 char **error_p)
{
    assert (config && config->dir && config->handler);
    assert (refused_p && error_p);
    *refused_p = false;
    *error_p = NULL;
    drover_job_t *self = (drover_job_t *)calloc (1, sizeof *self);
    if (!self) {
        *error_p = strdup ("out of memory");
        return NULL;
    }
    self->spool_fd = -1;
    self->config = config;
    self->dir = strdup (config->dir);
    self->pending = id_map_new ();
    if (!self->dir || !self->pending) {
        drover_job_destroy (&self);
        *error_p = strdup ("out of memory");
        return NULL;
    }
    drover_journal_config_t journal_config = drover_journal_config_default ();
    journal_config.dir = config->dir;
    char *reason = NULL;
    self->journal = drover_journal_open (&journal_config, &reason);
    if (!self->journal) {
        *error_p = zsys_sprintf ("cannot open the job log in %s: %s",
                                 config->dir, reason ? reason : "?");
        free (reason);
        drover_job_destroy (&self);
        return NULL;
    }
    drover_journal_stats_t journal_stats = {0};
    int rc = drover_journal_replay (self->journal, s_replay_record, self,
                                    &journal_stats);
    if (rc && !self->replay_error)
        s_fail (self, rc, "cannot read the job log in %s: %s", config->dir,
                drover_journal_error (self->journal));
    if (rc == 0 && self->spool && fflush (self->spool))
        rc = s_fail (self, DROVER_EIO, "cannot write a spool file in %s: %s",
                     self->dir, strerror (errno));
    if (self->spool)
        fclose (self->spool);
    self->spool = NULL;
    id_map_destroy (&self->pending);
    self->stats.corrupt = journal_stats.corrupt;
    self->stats.torn = journal_stats.torn_bytes;
    self->stats.fresh = !self->described;
    if (rc == 0 && !self->described)
        rc = s_describe (self);
    if (rc) {
        *refused_p = self->refused;
        *error_p = strdup (self->error);
        drover_job_destroy (&self);
        return NULL;
    }
    for (uint64_t i = 0; i < self->stats.known; i++)
        if (self->entries[i].id && !self->entries[i].spool)
            self->stats.pending++;
    self->config = NULL;
    return self;
}

void
drover_job_destroy (drover_job_t **self_p)
{
    assert (self_p);
    drover_job_t *self = *self_p;
    if (!self)
        return;
    drover_journal_close (&self->journal);
    if (self->spool)
        fclose (self->spool);
    if (self->spool_fd >= 0)
        close (self->spool_fd);
    id_map_destroy (&self->pending);
    free (self->entries);
    free (self->dir);
    free (self);
    *self_p = NULL;
}

const drover_job_stats_t *
drover_job_stats (drover_job_t *self)
{
    assert (self);
    return &self->stats;
}

const char *
drover_job_dir (drover_job_t *self)
{
    assert (self);
    return self->dir;
}

static int
s_pread_all (int fd, void *data, size_t size, uint64_t offset)
{
    char *cursor = (char *)data;
    while (size) {
        ssize_t got = pread (fd, cursor, size, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        cursor += got;
        size -= (size_t)got;
        offset += (uint64_t)got;
    }
    return 0;
}

//  Reads a result back from the spool.
static int
s_spool_read (drover_job_t *self, uint64_t offset, drover_result_t **result_p)
{
    s_spool_head_t head;
    if (s_pread_all (self->spool_fd, &head, sizeof head, offset))
        return s_fail (self, DROVER_EIO, "cannot read a spool file in %s: %s",
                       self->dir, strerror (errno));
    offset += sizeof head;
    //  One block, as the client makes results: drover_result_destroy
    //  frees it and the payload frame
    size_t strings = (size_t)head.reason_size + head.node_size;
    drover_result_t *result =
        (drover_result_t *)calloc (1, sizeof (drover_result_t) + strings);
    zframe_t *frame =
        head.payload_size ? zframe_new (NULL, (size_t)head.payload_size) : NULL;
    if (!result || (head.payload_size && !frame)) {
        free (result);
        zframe_destroy (&frame);
        return s_fail (self, DROVER_ENOMEM, "out of memory");
    }
    char *cursor = (char *)(result + 1);
    if ((strings && s_pread_all (self->spool_fd, cursor, strings, offset))
        || (frame
            && s_pread_all (self->spool_fd, zframe_data (frame),
                            zframe_size (frame), offset + strings))) {
        free (result);
        zframe_destroy (&frame);
        return s_fail (self, DROVER_EIO, "cannot read a spool file in %s: %s",
                       self->dir, strerror (errno));
    }
    if (head.reason_size) {
        cursor[head.reason_size - 1] = 0;
        result->reason = cursor;
    }
    if (head.node_size) {
        cursor[head.reason_size + head.node_size - 1] = 0;
        result->node = cursor + head.reason_size;
    }
    result->id = head.id;
    result->code = head.code;
    result->attempt = head.attempt;
    result->elapsed_us = head.elapsed_us;
    result->cpu_us = head.cpu_us;
    result->max_rss_kb = head.max_rss_kb;
    result->signal = head.signal;
    result->exit_status = head.exit_status;
    if (frame) {
        result->private_frame_ = frame;
        result->payload = zframe_data (frame);
        result->payload_size = zframe_size (frame);
    }
    *result_p = result;
    return 0;
}

int
drover_job_lookup (drover_job_t *self, uint64_t index, uint64_t digest,
                   uint64_t *id_p, drover_result_t **result_p)
{
    assert (self && id_p && result_p);
    *id_p = 0;
    *result_p = NULL;
    if (index >= self->stats.known)
        return DROVER_JOB_NEW;
    s_entry_t *entry = &self->entries[index];
    if (entry->digest && entry->digest != digest) {
        self->refused = true;
        return s_fail (self, DROVER_EINVAL,
                       "input line %" PRIu64 " differs from the job's; use "
                       "a new --job directory (or the job's input)",
                       index + 1);
    }
    if (entry->spool) {
        int rc = s_spool_read (self, entry->spool - 1, result_p);
        if (rc)
            return rc;
        *id_p = entry->id;
        return DROVER_JOB_DONE;
    }
    if (entry->id) {
        *id_p = entry->id;
        return DROVER_JOB_PENDING;
    }
    return DROVER_JOB_NEW;
}

int
drover_job_check_end (drover_job_t *self, uint64_t count)
{
    assert (self);
    if (count >= self->stats.known)
        return 0;
    self->refused = true;
    return s_fail (self, DROVER_EINVAL,
                   "the input has %" PRIu64 " lines, but the job's had at "
                   "least %" PRIu64
                   ": use the job's input, or a new --job directory",
                   count, self->stats.known);
}

static int
s_append (drover_job_t *self, drover_msg_t *msg)
{
    int rc = drover_journal_append_msg (self->journal, msg);
    if (rc)
        return s_fail (self, rc, "cannot log %s in the job log: %s",
                       drover_command_name (msg->command),
                       drover_msg_error (msg));
    return 0;
}

int
drover_job_log_submitted (drover_job_t *self, const uint64_t *indexes,
                          const uint64_t *ids, const uint64_t *digests,
                          size_t count)
{
    assert (self);
    size_t start = 0;
    while (start < count) {
        //  A run of consecutive inputs
        size_t end = start + 1;
        while (end < count && end - start < JOB_RUN_MAX
               && indexes[end] == indexes[end - 1] + 1)
            end++;
        size_t run = end - start;
        for (size_t i = 0; i < run; i++) {
            self->ids[i] = ids[start + i];
            self->ids[run + i] = digests[start + i];
        }
        drover_msg_t msg;
        drover_msg_init (&msg, DROVER_SUBMITTED);
        msg.ref = indexes[start];
        msg.ids = self->ids;
        msg.id_count = 2 * run;
        int rc = s_append (self, &msg);
        if (rc)
            return rc;
        start = end;
    }
    return 0;
}

int
drover_job_log_result (drover_job_t *self, const drover_result_t *result,
                       uint64_t *seq_p)
{
    assert (self && result && seq_p);
    drover_task_t item = {
        .id = result->id,
        .attempt = result->attempt,
        .code = result->code,
        .reason = result->reason,
        .node = result->node,
        .elapsed_us = result->elapsed_us,
        .cpu_us = result->cpu_us,
        .signal = result->signal,
        .exit_status = result->exit_status,
        .max_rss_kb = result->max_rss_kb,
        .payload = {result->payload, result->payload_size},
    };
    drover_msg_t msg;
    drover_msg_init (&msg, DROVER_RESULT);
    msg.tasks = &item;
    msg.task_count = 1;
    int rc = s_append (self, &msg);
    if (rc == 0)
        *seq_p = ++self->appended;
    return rc;
}

int
drover_job_flush (drover_job_t *self)
{
    assert (self);
    if (!drover_journal_pending (self->journal))
        return 0;
    if (drover_journal_commit (self->journal, false))
        return s_fail (self, DROVER_ESTORAGE,
                       "cannot write the job log in %s: %s", self->dir,
                       drover_journal_error (self->journal));
    return 0;
}

int
drover_job_sync_to (drover_job_t *self, uint64_t seq)
{
    assert (self);
    if (seq <= self->synced)
        return 0;
    uint64_t appended = self->appended;
    if (drover_journal_commit (self->journal, true))
        return s_fail (self, DROVER_ESTORAGE,
                       "cannot write the job log in %s: %s", self->dir,
                       drover_journal_error (self->journal));
    self->synced = appended;
    return 0;
}

bool
drover_job_refused (drover_job_t *self)
{
    assert (self);
    return self->refused;
}

const char *
drover_job_error (drover_job_t *self)
{
    assert (self);
    return self->error;
}
