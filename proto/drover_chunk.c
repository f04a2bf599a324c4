/*  drover_chunk.c - the payloads of chunks (SPEC.md 7.7), in msgpack,
    read and written by hand: four element kinds, no allocation per
    element, no copy of the octets read.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "drover_chunk.h"

#include "drover_error.h"
#include "drover_msg.h"
#include <stdlib.h>
#include <string.h>

//  The writer's array header: 0xdd and a 32-bit count
#define S_HEADER_SIZE 5

//  --------------------------------------------------------------------------
//  Reading

static uint32_t
s_be (const uint8_t *p, size_t octets)
{
    uint32_t value = 0;
    for (size_t i = 0; i < octets; i++)
        value = (value << 8) | p[i];
    return value;
}

//  Reads a header whose length field follows the type octet: *length of
//  octets (1, 2 or 4) at r->at + 1. Returns false when it does not fit.
static bool
s_length (drover_chunk_reader_t *self, size_t octets, uint32_t *length)
{
    if (self->size - self->at < 1 + octets)
        return false;
    *length = s_be (self->data + self->at + 1, octets);
    self->at += 1 + octets;
    return true;
}

//  An array header: true with *count, false when it is something else.
static bool
s_array (drover_chunk_reader_t *self, uint32_t *count)
{
    if (self->at >= self->size)
        return false;
    uint8_t type = self->data[self->at];
    if (type >= 0x90 && type <= 0x9f) {
        *count = type & 0x0f;
        self->at++;
        return true;
    }
    if (type == 0xdc)
        return s_length (self, 2, count);
    if (type == 0xdd)
        return s_length (self, 4, count);
    return false;
}

//  A bin (or, when str is true, a str) with its octets.
static bool
s_raw (drover_chunk_reader_t *self, bool str, const void **data, size_t *size)
{
    if (self->at >= self->size)
        return false;
    uint8_t type = self->data[self->at];
    uint32_t length;
    bool ok;
    if (str && type >= 0xa0 && type <= 0xbf) {
        length = type & 0x1f;
        self->at++;
        ok = true;
    }
    else if (type == (str ? 0xd9 : 0xc4))
        ok = s_length (self, 1, &length);
    else if (type == (str ? 0xda : 0xc5))
        ok = s_length (self, 2, &length);
    else if (type == (str ? 0xdb : 0xc6))
        ok = s_length (self, 4, &length);
    else
        ok = false;
    if (!ok || self->size - self->at < length)
        return false;
    *data = self->data + self->at;
    *size = length;
    self->at += length;
    return true;
}

//  A negative integer that fits 32 bits.
static bool
s_negative (drover_chunk_reader_t *self, int32_t *value)
{
    if (self->at >= self->size)
        return false;
    uint8_t type = self->data[self->at];
    uint32_t bits;
    if (type >= 0xe0) {
        *value = (int32_t)(int8_t)type;
        self->at++;
        return true;
    }
    if (type == 0xd0 && s_length (self, 1, &bits))
        *value = (int32_t)(int8_t)bits;
    else if (type == 0xd1 && s_length (self, 2, &bits))
        *value = (int32_t)(int16_t)bits;
    else if (type == 0xd2 && s_length (self, 4, &bits))
        *value = (int32_t)bits;
    else
        return false;
    return *value < 0;
}

int
drover_chunk_open (drover_chunk_reader_t *self, const void *data, size_t size,
                   uint32_t items)
{
    memset (self, 0, sizeof *self);
    self->data = (const uint8_t *)data;
    self->size = data ? size : 0;
    uint32_t count;
    if (!s_array (self, &count) || count != items)
        return DROVER_EINVAL;
    self->left = count;
    return 0;
}

//  The end: nothing left, nothing trailing.
static int
s_end (drover_chunk_reader_t *self)
{
    return self->at == self->size ? 0 : DROVER_EINVAL;
}

int
drover_chunk_next_input (drover_chunk_reader_t *self, const void **input,
                         size_t *size)
{
    if (self->left == 0)
        return s_end (self);
    if (!s_raw (self, false, input, size))
        return DROVER_EINVAL;
    self->left--;
    return 1;
}

int
drover_chunk_next_outcome (drover_chunk_reader_t *self, int32_t *code,
                           const void **output, size_t *size)
{
    if (self->left == 0)
        return s_end (self);
    if (self->at < self->size && self->data[self->at] == 0x92) {
        self->at++;
        if (!s_negative (self, code) || !s_raw (self, true, output, size)
            || *size > DROVER_MAX_TEXT)
            return DROVER_EINVAL;
    }
    else if (s_raw (self, false, output, size))
        *code = 0;
    else
        return DROVER_EINVAL;
    self->left--;
    return 1;
}

int
drover_chunk_failures (const void *data, size_t size)
{
    drover_chunk_reader_t reader = {.data = (const uint8_t *)data,
                                    .size = data ? size : 0};
    uint32_t count;
    if (!s_array (&reader, &count))
        return DROVER_EINVAL;
    reader.left = count;
    int failures = 0, rc;
    int32_t code;
    const void *output;
    size_t output_size;
    while (
        (rc = drover_chunk_next_outcome (&reader, &code, &output, &output_size))
        == 1)
        failures += code != 0;
    return rc < 0 ? rc : failures;
}

//  --------------------------------------------------------------------------
//  Writing

void
drover_chunk_writer_init (drover_chunk_writer_t *self, size_t limit)
{
    memset (self, 0, sizeof *self);
    self->limit = limit;
}

//  Octets of a bin or str header for size octets.
static size_t
s_raw_header_size (size_t size, bool str)
{
    if (str && size < 32)
        return 1;
    return size < 256 ? 2 : size < 65536 ? 3 : 5;
}

size_t
drover_chunk_size_with (const drover_chunk_writer_t *self, size_t size)
{
    size_t base = self->size ? self->size : S_HEADER_SIZE;
    return base + s_raw_header_size (size, false) + size;
}

//  Makes room for octets more; starts the header first. Returns 0 or an
//  error (kept in the writer).
static int
s_room (drover_chunk_writer_t *self, size_t octets)
{
    if (self->error)
        return self->error;
    if (self->count >= DROVER_MAX_ITEMS)
        return self->error = DROVER_ETOOBIG;
    size_t needed = (self->size ? self->size : S_HEADER_SIZE) + octets;
    if (needed < octets || (self->limit && needed > self->limit))
        return self->error = DROVER_ETOOBIG;
    if (needed > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 256;
        while (capacity < needed)
            capacity *= 2;
        uint8_t *data = (uint8_t *)realloc (self->data, capacity);
        if (!data)
            return self->error = DROVER_ENOMEM;
        self->data = data;
        self->capacity = capacity;
    }
    if (self->size == 0) {
        self->data[0] = 0xdd;
        self->size = S_HEADER_SIZE;
    }
    return 0;
}

static void
s_put_be (drover_chunk_writer_t *self, uint32_t value, size_t octets)
{
    for (size_t i = octets; i > 0; i--)
        self->data[self->size++] = (uint8_t)(value >> (8 * (i - 1)));
}

static void
s_put_raw (drover_chunk_writer_t *self, bool str, const void *data, size_t size)
{
    if (str && size < 32)
        self->data[self->size++] = (uint8_t)(0xa0 | size);
    else if (size < 256) {
        self->data[self->size++] = str ? 0xd9 : 0xc4;
        s_put_be (self, (uint32_t)size, 1);
    }
    else if (size < 65536) {
        self->data[self->size++] = str ? 0xda : 0xc5;
        s_put_be (self, (uint32_t)size, 2);
    }
    else {
        self->data[self->size++] = str ? 0xdb : 0xc6;
        s_put_be (self, (uint32_t)size, 4);
    }
    if (size)
        memcpy (self->data + self->size, data, size);
    self->size += size;
}

int
drover_chunk_add (drover_chunk_writer_t *self, const void *data, size_t size)
{
    if (size > UINT32_MAX)
        return self->error = DROVER_ETOOBIG;
    int rc = s_room (self, s_raw_header_size (size, false) + size);
    if (rc)
        return rc;
    s_put_raw (self, false, data, size);
    self->count++;
    return 0;
}

int
drover_chunk_add_failure (drover_chunk_writer_t *self, int32_t code,
                          const char *reason)
{
    size_t length = reason ? strnlen (reason, DROVER_MAX_TEXT) : 0;
    int rc = s_room (self, 1 + 5 + s_raw_header_size (length, true) + length);
    if (rc)
        return rc;
    self->data[self->size++] = 0x92;
    if (code >= -32)
        self->data[self->size++] = (uint8_t)(int8_t)code;
    else {
        self->data[self->size++] = 0xd2;
        s_put_be (self, (uint32_t)code, 4);
    }
    s_put_raw (self, true, reason, length);
    self->count++;
    return 0;
}

int
drover_chunk_finish (drover_chunk_writer_t *self, uint8_t **data_p,
                     size_t *size_p)
{
    int rc = self->error;
    if (rc == 0 && self->size == 0)
        rc = s_room (self, 0); //  an empty chunk: the header alone
    if (rc) {
        drover_chunk_writer_reset (self);
        return rc;
    }
    size_t size = self->size;
    self->size = 1;
    s_put_be (self, self->count, 4);
    *data_p = self->data;
    *size_p = size;
    size_t limit = self->limit;
    drover_chunk_writer_init (self, limit);
    return 0;
}

void
drover_chunk_writer_reset (drover_chunk_writer_t *self)
{
    free (self->data);
    size_t limit = self->limit;
    drover_chunk_writer_init (self, limit);
}
