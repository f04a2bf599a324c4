/*  drover_chunk.h - the payloads of chunks (SPEC.md 7.7): many inputs in
    one task, and their outcomes in one result.

    A chunk is one msgpack array of n bin values (the inputs, in order); its
    result one msgpack array of n elements: a bin (the output for that
    input) or an array [code, reason] (that input failed). The writer
    always uses a 5-octet array header, patched when the chunk is finished,
    so a chunk can be filled before its size is known; any valid msgpack
    header is read.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#ifndef DROVER_CHUNK_H_INCLUDED
#define DROVER_CHUNK_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*  Reads a chunk or a chunk result, element by element, without copying. */
typedef struct {
    const uint8_t *data; /* the payload */
    size_t size;         /* its octets */
    size_t at;           /* where the next element starts */
    uint32_t left;       /* elements not read yet */
} drover_chunk_reader_t;

/*  Starts reading data: it must begin with an array of exactly items
    elements. Returns 0, or DROVER_EINVAL. */
int drover_chunk_open (drover_chunk_reader_t *self, const void *data,
                       size_t size, uint32_t items);

/*  The next input of a chunk: returns 1 with *input and *size set (they
    point into the payload), 0 after the last one when no octets trail it,
    or DROVER_EINVAL when the chunk is malformed. */
int drover_chunk_next_input (drover_chunk_reader_t *self, const void **input,
                             size_t *size);

/*  The next outcome of a chunk result: returns 1 with *code 0 and *output,
    *size the output, or with *code < 0 and *output, *size the reason (not
    NUL-terminated); 0 after the last one when no octets trail it;
    DROVER_EINVAL when the result is malformed. */
int drover_chunk_next_outcome (drover_chunk_reader_t *self, int32_t *code,
                               const void **output, size_t *size);

/*  How many outcomes of a chunk result (of any number of inputs) are
    failures; DROVER_EINVAL when it is malformed. */
int drover_chunk_failures (const void *data, size_t size);

/*  Builds a chunk or a chunk result in a growing buffer. */
typedef struct {
    uint8_t *data;   /* the octets so far (malloc'd), or NULL */
    size_t size;     /* how many */
    size_t capacity; /* allocated */
    size_t limit;    /* most octets allowed; 0: no limit */
    uint32_t count;  /* elements added */
    int error;       /* DROVER_ETOOBIG or DROVER_ENOMEM once an add failed */
} drover_chunk_writer_t;

/*  Starts an empty chunk of at most limit octets (0: no limit). */
void drover_chunk_writer_init (drover_chunk_writer_t *self, size_t limit);

/*  Adds an input (chunk) or a successful output (chunk result). Returns 0,
    DROVER_ETOOBIG (past the limit, or more than DROVER_MAX_ITEMS) or
    DROVER_ENOMEM; after an error the writer takes nothing more. */
int drover_chunk_add (drover_chunk_writer_t *self, const void *data,
                      size_t size);

/*  Adds a failed outcome, [code, reason] (reason cut to 4096 octets), to a
    chunk result. Returns as drover_chunk_add. */
int drover_chunk_add_failure (drover_chunk_writer_t *self, int32_t code,
                              const char *reason);

/*  Octets the chunk would have with one more element of size octets. */
size_t drover_chunk_size_with (const drover_chunk_writer_t *self, size_t size);

/*  Writes the element count into the header and gives the buffer away:
    *data_p (malloc'd; caller frees) and *size_p. Returns 0, or the error
    of an earlier add (then nothing is given). The writer is empty again
    either way. */
int drover_chunk_finish (drover_chunk_writer_t *self, uint8_t **data_p,
                         size_t *size_p);

/*  Frees what the writer holds. */
void drover_chunk_writer_reset (drover_chunk_writer_t *self);

#ifdef __cplusplus
}
#endif

#endif
