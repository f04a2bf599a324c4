/*  drover_job.h - the job log of a resumable map (`drover map --job DIR`):
    which input got which task id, and which result, kept on disk so that
    a map that was killed can be run again and do only what is left.

    The log is a drover_journal (proto/drover_journal.h) of DTP messages
    (proto/JOURNAL.md, "Map job log"):

        SUBMIT     the first record: the job (ref 1; one task item with the
                   handler, queue and task options; key says the ordering
                   and the input separator; an empty payload)
        SUBMITTED  inputs the broker accepted: ref is the index of the
                   first input of a run of consecutive inputs, ids holds
                   2n numbers: the n task ids, in input order, then the n
                   digests of the inputs (64-bit FNV-1a, never 0)
        RESULT     results the sink delivered: the items as the sink sent
                   them, one payload frame per item (the result octets)

    A map with a job (drover_map_options_t.job) asks the job about every
    input it reads: an input with a logged result is handed back from the
    log and not run; an input with a logged id and no result is looked for
    at the broker and the sink and submitted again under its id only if
    neither holds it (SPEC.md 7.6), or run as a new task when it was
    cancelled or the broker keeps it as a dead letter whose result the
    sink released; any other input runs. The map logs
    ids as the broker accepts them and results as they come, and syncs
    the log before it hands a result back (group commit: one fdatasync
    for all results that came together), so every result a caller has
    seen is on disk.

    Memory: 24 octets per input the log knows (its id, digest and where
    its result lies in a spool file), plus a hash entry per input whose
    result is pending during replay. The result octets of the log are
    copied at open to an unnamed spool file in DIR, and each is read back
    once, when its input comes.

    Internal to client/ and the CLI; not installed.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_JOB_H_INCLUDED
#define DROVER_JOB_H_INCLUDED

#include "drover_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct drover_job_t drover_job_t;

/*  What makes a job: a log opened with other values of handler, queue,
    ordered, nul_separated or chunksize is refused. */
typedef struct {
    const char *dir;                   /* the log's directory */
    const char *handler;               /* the map's handler */
    const char *queue;                 /* its queue; NULL: "default" */
    bool ordered;                      /* results in input order */
    bool nul_separated;                /* inputs end with NUL, not newline */
    bool retry_failed;                 /* logged failures run again (a
                                          chunk with a failed input: whole) */
    const drover_task_options_t *task; /* recorded in the first record;
                                          may differ on a re-run */
    uint32_t chunksize;                /* inputs per task (a fixed size;
                                          0 and 1: one) */
} drover_job_config_t;

/*  What the log held when it was opened. */
typedef struct {
    bool fresh;       /* the log was empty: a new job */
    uint64_t records; /* valid records replayed */
    uint64_t known;   /* 1 + the highest input index the log names */
    uint64_t results; /* inputs with a logged result */
    uint64_t failed;  /* of which failures */
    uint64_t pending; /* inputs with a task id and no result */
    uint64_t corrupt; /* damaged regions the journal skipped */
    uint64_t torn;    /* octets of a torn last record cut away */
} drover_job_stats_t;

/*  What drover_job_lookup knows of an input. */
#define DROVER_JOB_NEW     0 /* nothing: submit it */
#define DROVER_JOB_PENDING 1 /* submitted as *id_p, no result logged */
#define DROVER_JOB_DONE    2 /* its result is *result_p */

/*  Opens (creating if needed) the job log in config->dir and replays it.
    Returns NULL with a malloc'd reason in *error_p (caller frees) and
    *refused_p true when the log belongs to another job (other handler,
    queue, ordering or separator, or a directory that is not a job log),
    false when it cannot be read or written (I/O, locked by another
    process, out of memory). */
drover_job_t *drover_job_open (const drover_job_config_t *config,
                               bool *refused_p, char **error_p);

/*  Commits what is buffered (with fdatasync), closes the log and NULLs
    the pointer. NULL-safe. */
void drover_job_destroy (drover_job_t **self_p);

/*  What the log held when it was opened. */
const drover_job_stats_t *drover_job_stats (drover_job_t *self);

/*  The log's directory. */
const char *drover_job_dir (drover_job_t *self);

/*  The digest of an input, as the log keeps it: never 0. */
uint64_t drover_job_digest (const void *data, size_t size);

/*  What the log knows of input index, whose digest is digest. Returns
    DROVER_JOB_NEW; DROVER_JOB_PENDING with *id_p set; DROVER_JOB_DONE
    with *id_p and *result_p set (caller owns the result); DROVER_EINVAL
    when the log holds another input at that index (drover_job_refused
    turns true; the reason says which line); DROVER_EIO or DROVER_ENOMEM
    when the result cannot be read back. */
int drover_job_lookup (drover_job_t *self, uint64_t index, uint64_t digest,
                       uint64_t *id_p, drover_result_t **result_p);

/*  Checks that an input of count items covers every input the log names.
    Returns 0, or DROVER_EINVAL (refused) when it is shorter. */
int drover_job_check_end (drover_job_t *self, uint64_t count);

/*  Logs that inputs indexes[i] (digests[i]) became tasks ids[i]; buffered
    until the next commit. Returns 0 or a DROVER_E* code. */
int drover_job_log_submitted (drover_job_t *self, const uint64_t *indexes,
                              const uint64_t *ids, const uint64_t *digests,
                              size_t count);

/*  Logs a result the sink delivered (result->id is not 0); buffered until
    the next commit. Sets *seq_p to a number drover_job_sync_to takes.
    Returns 0 or a DROVER_E* code. */
int drover_job_log_result (drover_job_t *self, const drover_result_t *result,
                           uint64_t *seq_p);

/*  Writes what is buffered (no fdatasync unless the journal's interval
    passed). Returns 0, or DROVER_ESTORAGE with the reason in
    drover_job_error (the buffered records are lost). */
int drover_job_flush (drover_job_t *self);

/*  Makes sure the result logged with seq is on disk: writes and syncs
    everything buffered unless that was done since. Returns 0 or
    DROVER_ESTORAGE. */
int drover_job_sync_to (drover_job_t *self, uint64_t seq);

/*  True when an input differed from the log's (lookup or check_end). */
bool drover_job_refused (drover_job_t *self);

/*  Why the last failing call failed, or "". */
const char *drover_job_error (drover_job_t *self);

#ifdef __cplusplus
}
#endif

#endif
