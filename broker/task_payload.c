/*  task_payload.c - a task's input, as the broker keeps it.

    This Source Code Form is subject to the terms of the Mozilla Public
    License, v. 2.0. If a copy of the MPL was not distributed with this
    file, You can obtain one at http://mozilla.org/MPL/2.0/.
*/
#include "task_payload.h"

//  Eight octets, so that a 16-octet payload and its head take malloc's
//  smallest chunk (32 octets). A small payload's octets follow the head
//  in the same block.
struct task_payload_t {
    uint32_t size; //  octets of a small payload
    bool framed;   //  a large payload: it is an s_framed_t
};

typedef struct {
    task_payload_t head;
    zframe_t *frame; //  the frame it came in
} s_framed_t;

static uint8_t *
s_octets (task_payload_t *self)
{
    return (uint8_t *)(self + 1);
}

task_payload_t *
task_payload_take (zframe_t **frame_p)
{
    assert (frame_p && *frame_p);
    zframe_t *frame = *frame_p;
    if (zframe_size (frame) <= TASK_PAYLOAD_COPY_MAX) {
        task_payload_t *self =
            task_payload_new (zframe_data (frame), zframe_size (frame));
        zframe_destroy (frame_p);
        return self;
    }
    s_framed_t *framed = (s_framed_t *)zmalloc (sizeof *framed);
    assert (framed);
    framed->head.framed = true;
    framed->frame = frame;
    *frame_p = NULL;
    return &framed->head;
}

task_payload_t *
task_payload_new (const void *data, size_t size)
{
    if (size > TASK_PAYLOAD_COPY_MAX) {
        zframe_t *frame = zframe_new (data, size);
        assert (frame);
        return task_payload_take (&frame);
    }
    task_payload_t *self = (task_payload_t *)malloc (sizeof *self + size);
    assert (self);
    self->size = (uint32_t)size;
    self->framed = false;
    if (size)
        memcpy (s_octets (self), data, size);
    return self;
}

void
task_payload_destroy (task_payload_t **self_p)
{
    assert (self_p);
    task_payload_t *self = *self_p;
    if (!self)
        return;
    if (self->framed)
        zframe_destroy (&((s_framed_t *)self)->frame);
    free (self);
    *self_p = NULL;
}

const void *
task_payload_data (task_payload_t *self)
{
    if (self->framed)
        return zframe_data (((s_framed_t *)self)->frame);
    return self->size ? s_octets (self) : NULL;
}

size_t
task_payload_size (task_payload_t *self)
{
    return self->framed ? zframe_size (((s_framed_t *)self)->frame)
                        : self->size;
}

zframe_t *
task_payload_lend (task_payload_t *self)
{
    if (self->framed)
        return ((s_framed_t *)self)->frame;
    zframe_t *copy = zframe_new (s_octets (self), self->size);
    assert (copy);
    return copy;
}

void
task_payload_unlend (task_payload_t *self, zframe_t **frame_p)
{
    if (!self->framed)
        zframe_destroy (frame_p);
    *frame_p = NULL;
}
